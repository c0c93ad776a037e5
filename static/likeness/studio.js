// The studio's edit page: paint a mask over the chosen photo (sent as the PNG the edit action accepts:
// white where the photo may change, black elsewhere, at the photo's own size), and compare before and
// after with a slider. No inline styles: the Content-Security-Policy refuses them; CSSOM is allowed.
(() => {
  "use strict";

  function setUpMask(editor) {
    const form = editor.closest("form");
    const photo = document.getElementById("mask-photo");
    const canvas = document.getElementById("mask-canvas");
    const brush = document.getElementById("mask-brush");
    const maskInput = form.querySelector("input[type=file][name=mask]");
    const upload = form.querySelector("input[type=file][name=source_upload]");
    const radios = [...form.querySelectorAll("input[name=source_photo]")];
    const context = canvas.getContext("2d");
    let drawing = false;

    const tool = () => (form.querySelector("input[name=mask_tool]:checked") || {}).value || "paint";
    const clear = () => {
      context.clearRect(0, 0, canvas.width, canvas.height);
      delete canvas.dataset.painted;
    };
    const show = (source) => {
      photo.src = source;
    };
    photo.addEventListener("load", () => {
      canvas.width = photo.naturalWidth;
      canvas.height = photo.naturalHeight;
      clear();
      editor.classList.remove("hidden");
    });
    radios.forEach((radio) =>
      radio.addEventListener("change", () => {
        if (!radio.checked) return;
        if (upload) upload.value = "";
        show(radio.closest("label").querySelector("img").src);
      }),
    );
    if (upload) {
      upload.addEventListener("change", () => {
        if (!upload.files.length) return;
        radios.forEach((radio) => (radio.checked = false));
        show(URL.createObjectURL(upload.files[0]));
      });
    }
    const checked = radios.find((radio) => radio.checked);
    if (checked) show(checked.closest("label").querySelector("img").src);

    const dab = (event) => {
      const box = canvas.getBoundingClientRect();
      const x = ((event.clientX - box.left) * canvas.width) / box.width;
      const y = ((event.clientY - box.top) * canvas.height) / box.height;
      const radius = (Math.max(canvas.width, canvas.height) * Number(brush.value)) / 200;
      context.globalCompositeOperation = tool() === "erase" ? "destination-out" : "source-over";
      context.fillStyle = "#ff2d55";
      context.beginPath();
      context.arc(x, y, radius, 0, Math.PI * 2);
      context.fill();
      canvas.dataset.painted = "true";
    };
    canvas.addEventListener("pointerdown", (event) => {
      drawing = true;
      canvas.setPointerCapture(event.pointerId);
      dab(event);
    });
    canvas.addEventListener("pointermove", (event) => drawing && dab(event));
    ["pointerup", "pointercancel"].forEach((name) => canvas.addEventListener(name, () => (drawing = false)));
    document.getElementById("mask-clear").addEventListener("click", clear);

    // Whether anything is left painted (an erased stroke leaves nothing): the mask goes only then.
    const anythingPainted = () => {
      if (!canvas.width || !canvas.dataset.painted) return false;
      const alpha = context.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < alpha.length; i += 4) if (alpha[i]) return true;
      return false;
    };
    const maskBlob = () =>
      new Promise((resolve) => {
        const out = document.createElement("canvas");
        out.width = canvas.width;
        out.height = canvas.height;
        const pen = out.getContext("2d");
        pen.drawImage(canvas, 0, 0);
        pen.globalCompositeOperation = "source-in"; // painted pixels white...
        pen.fillStyle = "#fff";
        pen.fillRect(0, 0, out.width, out.height);
        pen.globalCompositeOperation = "destination-over"; // ...on black
        pen.fillStyle = "#000";
        pen.fillRect(0, 0, out.width, out.height);
        out.toBlob(resolve, "image/png");
      });

    form.addEventListener("submit", (event) => {
      maskInput.value = "";
      if (!anythingPainted()) return;
      event.preventDefault();
      maskBlob().then((blob) => {
        const files = new DataTransfer();
        files.items.add(new File([blob], "mask.png", { type: "image/png" }));
        maskInput.files = files.files;
        form.submit(); // fires no submit event: the mask is attached once
      });
    });
  }

  function setUpSlider(slider) {
    const after = document.getElementById(slider.dataset.compare).querySelector(".compare-after");
    const apply = () => {
      after.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
    };
    slider.addEventListener("input", apply);
    apply();
  }

  // A job still running on a results page: its progress follows the job's socket, and the page reloads
  // to show the results once the job has ended (the server sends the snapshot on every connect).
  function follow(section) {
    const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
    const progress = section.querySelector("progress");
    let delay = 1000;
    let ended = false;
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}${section.dataset.socket}`);
      socket.addEventListener("open", () => (delay = 1000));
      socket.addEventListener("message", (message) => {
        const job = JSON.parse(message.data).data;
        if (!job) return;
        if (progress) progress.value = job.progress;
        if (TERMINAL.has(job.status) && !ended) {
          ended = true;
          socket.close();
          location.reload();
        }
      });
      socket.addEventListener("close", (event) => {
        if (ended || (event.code >= 4400 && event.code < 4500)) return;
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      });
    };
    connect();
  }

  document.querySelectorAll("section[data-socket]").forEach(follow);
  const editor = document.getElementById("mask-editor");
  if (editor) setUpMask(editor);
  document.querySelectorAll("input.compare-slider[data-compare]").forEach(setUpSlider);
})();
