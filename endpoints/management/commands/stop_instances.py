from django.core.management.base import BaseCommand
from django.utils import timezone

from endpoints.models import LIVE_INSTANCE_STATES, Instance, InstanceState
from serving import launcher


class Command(BaseCommand):
    help = "Stop every instance process (make run does this on Ctrl-C); the reconciler starts them again."

    def handle(self, *args, **options) -> None:
        stopped = 0
        for instance in Instance.objects.filter(state__in=(*LIVE_INSTANCE_STATES, InstanceState.DRAINING)):
            if launcher.is_running(instance.pid, str(instance.id)):
                launcher.stop(instance.pid, str(instance.id), grace=10)
                stopped += 1
            if instance.state != InstanceState.DRAINING:
                # not a crash: start it again as soon as the reconciler runs, without counting a restart
                Instance.objects.filter(pk=instance.pk).update(
                    state=InstanceState.CRASHED,
                    next_restart_at=timezone.now(),
                    last_exit="Stopped when Flowdeploy shut down.",
                )
            else:
                Instance.objects.filter(pk=instance.pk).update(state=InstanceState.STOPPED, stopped_at=timezone.now())
        self.stdout.write(f"Stopped {stopped} instance process(es).")
