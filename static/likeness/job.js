// The job page (templates/training/job_detail.html): redraw from the stored snapshot, then from each
// event of /ws/jobs/<id>/; reconnect with back-off (the server sends the snapshot again on every connect).
(() => {
  const root = document.getElementById("job");
  const $ = (id) => document.getElementById(id);
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const previews = $("job-previews");

  function curve(history) {
    if (!history || history.length < 2) return "";
    const steps = history.map((p) => p[0]), losses = history.map((p) => p[1]);
    const x0 = Math.min(...steps), x1 = Math.max(...steps), y0 = Math.min(...losses), y1 = Math.max(...losses);
    return history.map(([s, l]) =>
      `${((s - x0) / Math.max(x1 - x0, 1e-9) * 400).toFixed(1)},${(100 - (l - y0) / Math.max(y1 - y0, 1e-9) * 95 - 2.5).toFixed(1)}`
    ).join(" ");
  }

  const tones = JSON.parse($("job-status-tones").textContent);
  let status = "";
  function render(job) {
    status = job.status;
    $("job-status").textContent = job.status_label;
    $("job-status").dataset.status = job.status;
    $("job-status").className = `pill tone-${tones[job.status] || "neutral"}`;
    $("job-progress").value = job.progress;
    $("job-steps").textContent = (job.total_steps ? `step ${job.step} of ${job.total_steps}` : "") + (job.phase ? ` (${job.phase})` : "");
    $("job-eta").textContent = job.eta_seconds == null ? "—" : `about ${Math.round(job.eta_seconds)} s`;
    $("job-queue").textContent = job.queue_position || "—";
    $("job-worker").textContent = (job.worker_host || "—") + (job.device ? ` on ${job.device}` : "");
    const losses = Object.entries(job.losses || {});
    $("job-losses").textContent = losses.length ? losses.map(([k, v]) => `${k} ${Number(v).toFixed(4)}`).join(" · ") : "—";
    $("job-curve-line").setAttribute("points", curve(job.loss_history));
    $("job-error").textContent = job.error_message || "";
    $("job-error").classList.toggle("hidden", !job.error_message || job.status === "cancelled");
    $("job-stopping").classList.toggle("hidden", !(job.cancel_requested && job.status === "running"));
    const cancel = $("job-cancel");
    if (cancel) cancel.classList.toggle("hidden", TERMINAL.has(job.status));
    if (previews && job.previews.length) {
      previews.replaceChildren(...job.previews.map((p) => {
        const figure = document.createElement("figure"), img = document.createElement("img"), caption = document.createElement("figcaption");
        figure.className = "thumb"; img.src = p.url; img.alt = `Preview at step ${p.step}`;
        caption.className = "muted"; caption.textContent = `step ${p.step}`;
        figure.append(img, caption);
        return figure;
      }));
    }
  }

  render(JSON.parse($("job-snapshot").textContent));
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socket}`);
    socket.addEventListener("open", () => { delay = 1000; $("job-live").textContent = "Live."; });
    socket.addEventListener("message", (message) => {
      const payload = JSON.parse(message.data);
      if (payload.data) render(payload.data);
    });
    socket.addEventListener("close", (event) => {
      if (event.code >= 4400 && event.code < 4500) { $("job-live").textContent = "Live updates are not available for this job."; return; }
      if (TERMINAL.has(status)) { $("job-live").textContent = ""; return; }
      $("job-live").textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
