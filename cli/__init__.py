"""`flowdeploy`: the command line for the studio's JSON API, shaped like `az ml`."""
