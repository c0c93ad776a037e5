// Behaviour the markup asks for with data attributes: the Content-Security-Policy allows no inline handlers.
document.addEventListener("change", (event) => {
  if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
});
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
// A link into a collapsed <details> section opens it (Chromium does on its own; other browsers do not).
const openTarget = () => {
  const target = window.location.hash && document.getElementById(decodeURIComponent(window.location.hash.slice(1)));
  const section = target && target.closest("details");
  if (section && !section.open) { section.open = true; target.scrollIntoView(); }
};
window.addEventListener("hashchange", openTarget);
document.addEventListener("DOMContentLoaded", openTarget);
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) { event.preventDefault(); window.print(); }
  const openAll = event.target.closest("[data-open-sections]");
  if (openAll) {
    event.preventDefault();
    document.querySelectorAll("details.section").forEach((section) => { section.open = true; });
  }
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    event.preventDefault();
    const source = document.getElementById(copy.dataset.copy);
    navigator.clipboard.writeText(source.value || source.textContent).then(() => {
      const label = copy.textContent;
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = label; }, 1500);
    });
  }
});
// A page showing work under way on the server (data-reload-after="seconds") reloads itself to show its
// outcome; the page stops asking once the work is done.
const reloading = document.querySelector("[data-reload-after]");
if (reloading) setTimeout(() => window.location.reload(), Number(reloading.dataset.reloadAfter) * 1000);
