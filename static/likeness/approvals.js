// The approval queue by keyboard alone: j/k move a visible focus between outputs, a approves the focused
// one, r goes to its reason (Enter there rejects), x selects it for the bulk bar. Every decision is the
// page's own form, so the queue works the same without this script.
(() => {
  const queue = document.getElementById("review-queue");
  if (!queue) return;
  const items = () => [...queue.querySelectorAll(".review-item")];
  const count = document.getElementById("bulk-count");

  const focusItem = (item) => {
    if (!item) return;
    items().forEach((other) => other.classList.toggle("focused", other === item));
    item.focus();
    item.scrollIntoView({ block: "nearest" });
  };
  const current = () => queue.querySelector(".review-item.focused") || null;
  const move = (step) => {
    const all = items();
    const index = all.indexOf(current());
    focusItem(all[Math.min(Math.max(index + step, 0), all.length - 1)] || all[0]);
  };
  const updateCount = () => {
    if (!count) return;  // a list of decided outputs: nothing to decide or select
    const selected = queue.querySelectorAll(".review-select:checked").length;
    count.textContent = selected ? `Selected: ${selected}` : "Selected: none";
  };

  queue.addEventListener("change", (event) => {
    if (event.target.matches(".review-select")) updateCount();
  });
  queue.addEventListener("focusin", (event) => {
    const item = event.target.closest(".review-item");
    if (item) items().forEach((other) => other.classList.toggle("focused", other === item));
  });
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea, [contenteditable]")) return;
    const item = current();
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": if (item && count) item.querySelector(".review-approve-form").requestSubmit(); break;
      case "r": if (item && count) item.querySelector(".review-reason").focus(); break;
      case "x":
        if (item && count) {
          const box = item.querySelector(".review-select");
          box.checked = !box.checked;
          updateCount();
        }
        break;
      default: return;
    }
    event.preventDefault();
  });
  // After a decision the page comes back with the focus on the same place in the queue (the next output).
  const params = new URLSearchParams(window.location.search);
  if (params.has("focus")) focusItem(items()[Number(queue.dataset.focus)] || items()[0]);
  updateCount();
})();
