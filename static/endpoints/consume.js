// The Consume tab. Copy a key (fetched from its reveal URL, so Copy works while the key is still
// masked), a token or a code sample; show or hide an issued token. htmx reveals and hides the keys.
(() => {
  async function keyText(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/plain" } });
    // A refusal's text says why (an Azure ML endpoint: Azure's own message).
    if (!response.ok) throw new Error((await response.text()) || `${response.status} ${response.statusText}`);
    return response.text();
  }

  function elementText(selector) {
    const element = document.querySelector(selector);
    if (!element) throw new Error(`nothing to copy at ${selector}`);
    const pre = element.querySelector("pre"); // a highlighted sample: its text is the source
    return (pre || element).textContent;
  }

  function flash(button, text) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = text;
    clearTimeout(button.flashTimer);
    button.flashTimer = setTimeout(() => {
      button.textContent = button.dataset.label;
    }, 2000);
  }

  async function copy(button) {
    try {
      const text = button.dataset.copyUrl ? await keyText(button.dataset.copyUrl) : elementText(button.dataset.copyTarget);
      await navigator.clipboard.writeText(text);
      flash(button, "Copied");
    } catch (error) {
      console.error("copy failed", error);
      button.title = error.message;
      flash(button, "Copy failed");
    }
  }

  function toggle(button) {
    const value = document.querySelector(button.dataset.toggleSecret);
    const mask = value.parentElement.querySelector(".masked");
    const show = value.hidden;
    value.hidden = !show;
    if (mask) mask.hidden = show;
    button.textContent = show ? "Hide" : "Show";
    button.setAttribute("aria-label", button.getAttribute("aria-label").replace(show ? "Show" : "Hide", show ? "Hide" : "Show"));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-url], [data-copy-target], [data-toggle-secret]");
    if (!button) return;
    if (button.dataset.toggleSecret) toggle(button);
    else copy(button);
  });
})();
