// Small behaviours shared by every page. htmx does the rest.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const label = button.textContent;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 2000);
  });
});

// A form the server refused (422) comes back with its errors: swap it in like a success.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.xhr.status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// A section marked data-keep-edits that a poll brings again (hx-swap-oob) is not replaced while the user has
// typed something in it that is not saved yet: what was typed is not lost; the next answer tries again.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const target = event.detail.target;
  if (target && target.hasAttribute("data-keep-edits") && isEdited(target)) event.detail.shouldSwap = false;
});

function isEdited(element) {
  return Array.from(element.querySelectorAll("input, textarea, select")).some((field) => {
    if (field.type === "hidden" || field.disabled) return false;
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") return Array.from(field.options).some((o) => o.selected !== o.defaultSelected);
    return field.value !== field.defaultValue;
  });
}

// An error the user must see (e.g. the Scale error) is scrolled to, where they are, on load and after a swap.
function scrollToMarked(root) {
  const marked = (root || document).querySelector("[data-scroll-into-view]");
  if (marked) marked.scrollIntoView({ block: "center" });
}
document.addEventListener("DOMContentLoaded", () => scrollToMarked(document));
document.addEventListener("htmx:afterSettle", (event) => scrollToMarked(event.detail.elt));

// The main navigation collapses behind the Menu button on narrow screens.
document.addEventListener("click", (event) => {
  const button = event.target.closest("#menu-button");
  if (!button) return;
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("nav-open", open);
});
