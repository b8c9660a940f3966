// Review UI behaviour: keyboard moves on the worklist; overlays, window/level, zoom and
// marking missed findings on the study page. Plain JavaScript, no libraries; every control
// is a real form element, so the pages still work (less comfortably) without it.
"use strict";

(() => {
  const typing = (target) => target.closest && target.closest("input, select, textarea, button");

  const plainKey = (event) =>
    !(event.altKey || event.ctrlKey || event.metaKey || typing(event.target));

  // -- worklist: j/n/k or arrows move between studies; Enter opens (a real link) --------------
  document.addEventListener("keydown", (event) => {
    if (!plainKey(event)) return;
    const links = Array.from(document.querySelectorAll("a.study-link"));
    const step = { j: 1, n: 1, ArrowDown: 1, k: -1, ArrowUp: -1 }[event.key];
    if (!links.length || !step) return;
    const at = links.indexOf(document.activeElement);
    const next = at < 0 ? 0 : Math.max(0, Math.min(links.length - 1, at + step));
    links[next].focus();
    event.preventDefault();
  });

  // -- worklist: refresh the rows every data-refresh seconds, keeping filters, scroll, focus --
  const list = document.getElementById("worklist");
  if (list && Number(list.dataset.refresh) > 0) {
    const swap = (fresh, id) => {
      const old = document.getElementById(id);
      const now = fresh.getElementById(id);
      if (old && now) old.replaceWith(document.importNode(now, true));
    };
    const refresh = async () => {
      if (document.hidden) return;
      const focused = document.activeElement && document.activeElement.closest("tr[data-uid]");
      const uid = focused ? focused.dataset.uid : null;
      const scroll = [window.scrollX, window.scrollY];
      try {
        const response = await fetch(window.location.href, {
          credentials: "same-origin",
          headers: { "X-Requested-With": "refresh" },
        });
        if (!response.ok) return; // signed out: the page's own links lead to sign-in
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        const body = fresh.querySelector("#worklist tbody");
        if (!body) return;
        document.querySelector("#worklist tbody").replaceWith(document.importNode(body, true));
        swap(fresh, "summary");
        const pager = document.querySelector("nav.pager");
        const freshPager = fresh.querySelector("nav.pager");
        if (pager && freshPager) pager.replaceWith(document.importNode(freshPager, true));
        if (uid) {
          const row = Array.from(document.querySelectorAll("#worklist tr[data-uid]"))
            .find((tr) => tr.dataset.uid === uid);
          const link = row && row.querySelector("a.study-link");
          if (link) link.focus({ preventScroll: true });
        }
        window.scrollTo(scroll[0], scroll[1]);
      } catch (error) {
        // offline for a moment: the next round tries again
      }
    };
    setInterval(refresh, Number(list.dataset.refresh) * 1000);
  }

  // -- study page: a agree, d disagree, r read, n/j next, k previous -----------------------
  const click = (element) => {
    if (!element) return false;
    element.click();
    return true;
  };
  document.addEventListener("keydown", (event) => {
    if (!plainKey(event) || !document.body.classList.contains("study")) return;
    let done = false;
    if (event.key === "a" || event.key === "d") {
      const verdict = event.key === "a" ? "agree" : "disagree";
      const inFocus = document.activeElement && document.activeElement.closest("tr[data-code]");
      const form =
        (inFocus && document.querySelector(`form.verdict[data-code="${inFocus.dataset.code}"]`)) ||
        (() => {
          const flagged = document.querySelector("#findings tr.flagged[data-code]");
          const first = flagged || document.querySelector("#findings tr[data-code]");
          return first && document.querySelector(`form.verdict[data-code="${first.dataset.code}"]`);
        })();
      done = click(form && form.querySelector(`button[value="${verdict}"]`));
    } else if (event.key === "r") {
      const unread = document.querySelector('#read-form input[name="read"][value="1"]');
      done = click(unread && document.querySelector("#read-form button[type=submit]"));
    } else if (event.key === "n" || event.key === "j") {
      done = click(document.getElementById("next-study"));
    } else if (event.key === "k") {
      done = click(document.getElementById("prev-study"));
    }
    if (done) event.preventDefault();
  });

  const stage = document.getElementById("stage");
  if (!stage) return;
  const $ = (id) => document.getElementById(id);
  const rows = Number(stage.dataset.rows);
  const cols = Number(stage.dataset.cols);
  const viewport = $("viewport");
  const image = $("image");
  const heat = $("heatmap");
  stage.style.aspectRatio = `${cols} / ${rows}`;

  // -- overlays ------------------------------------------------------------------------------
  const bindToggle = (checkbox, layer) => {
    if (!checkbox || !layer) return;
    const apply = () => layer.classList.toggle("hidden", !checkbox.checked);
    checkbox.addEventListener("change", apply);
    apply();
  };
  bindToggle($("show-heatmap"), heat);
  bindToggle($("show-boxes"), $("boxes"));
  const heatCodes = $("heat-codes");
  if (heatCodes && heat) {
    heatCodes.addEventListener("change", () => {
      heat.src = `${stage.dataset.heatmap}&codes=${encodeURIComponent(heatCodes.value)}`;
    });
  }
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    const box = { h: $("show-heatmap"), b: $("show-boxes") }[event.key];
    if (box && !box.disabled) {
      box.checked = !box.checked;
      box.dispatchEvent(new Event("change"));
    }
  });

  // -- window / level: the server renders the PNG for the chosen window -------------------
  const wc = $("wc");
  const ww = $("ww");
  let pending = null;
  const showWindow = () => {
    $("wc-value").value = Number(wc.value).toFixed(1);
    $("ww-value").value = Number(ww.value).toFixed(1);
  };
  const reload = () => {
    showWindow();
    clearTimeout(pending);
    pending = setTimeout(() => {
      image.src = `${stage.dataset.image}&wc=${encodeURIComponent(wc.value)}&ww=${encodeURIComponent(ww.value)}`;
    }, 120);
  };
  if (wc && ww) {
    wc.addEventListener("input", reload);
    ww.addEventListener("input", reload);
    $("window-reset").addEventListener("click", () => {
      wc.value = stage.dataset.wc;
      ww.value = stage.dataset.ww;
      showWindow();
      image.src = stage.dataset.image;
    });
  }

  // -- zoom: the stage grows inside a scrolling viewport; overlays scale with it ---------------
  let zoom = 1;
  const fitWidth = () => {
    const height = window.innerHeight * 0.78;
    return Math.max(100, Math.min(viewport.clientWidth, (height * cols) / rows));
  };
  const applyZoom = () => {
    stage.style.width = `${Math.round(fitWidth() * zoom)}px`;
    $("zoom-value").value = `${Math.round(zoom * 100)}%`;
  };
  $("zoom-in").addEventListener("click", () => { zoom = Math.min(8, zoom * 1.25); applyZoom(); });
  $("zoom-out").addEventListener("click", () => { zoom = Math.max(0.25, zoom / 1.25); applyZoom(); });
  $("zoom-fit").addEventListener("click", () => { zoom = 1; applyZoom(); });
  window.addEventListener("resize", applyZoom);
  applyZoom();

  // -- marking a missed finding: click for a point, drag for a region (image pixels) ---------
  const form = $("missed-form");
  if (!form) return;
  const x = $("missed-x");
  const y = $("missed-y");
  const corners = ["x0", "y0", "x1", "y1"].map((name) => $(`missed-${name}`));
  const mark = $("mark");
  const markBox = $("mark-box");
  const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
  const toImage = (event) => {
    const r = stage.getBoundingClientRect();
    return [clamp(((event.clientX - r.left) / r.width) * cols, cols),
            clamp(((event.clientY - r.top) / r.height) * rows, rows)];
  };
  const drawPoint = (px, py) => {
    mark.setAttribute("cx", px);
    mark.setAttribute("cy", py);
    mark.setAttribute("visibility", "visible");
  };
  const setBox = (box) => {
    corners.forEach((input, i) => { input.value = box ? box[i].toFixed(1) : ""; });
    if (!box) { markBox.setAttribute("visibility", "hidden"); return; }
    markBox.setAttribute("x", box[0]);
    markBox.setAttribute("y", box[1]);
    markBox.setAttribute("width", box[2] - box[0]);
    markBox.setAttribute("height", box[3] - box[1]);
    markBox.setAttribute("visibility", "visible");
  };
  let start = null;
  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    start = toImage(event);
    event.preventDefault();
  });
  stage.addEventListener("pointerup", (event) => {
    if (!start) return;
    const end = toImage(event);
    const scale = stage.getBoundingClientRect().width / cols;
    const dragged = Math.hypot(end[0] - start[0], end[1] - start[1]) * scale > 6;
    const box = dragged
      ? [Math.min(start[0], end[0]), Math.min(start[1], end[1]),
         Math.max(start[0], end[0]), Math.max(start[1], end[1])]
      : null;
    const px = box ? (box[0] + box[2]) / 2 : start[0];
    const py = box ? (box[1] + box[3]) / 2 : start[1];
    x.value = px.toFixed(1);
    y.value = py.toFixed(1);
    drawPoint(px, py);
    setBox(box);
    start = null;
  });
  const typed = () => {
    if (x.value !== "" && y.value !== "") drawPoint(Number(x.value), Number(y.value));
    setBox(null);
  };
  x.addEventListener("input", typed);
  y.addEventListener("input", typed);
})();
