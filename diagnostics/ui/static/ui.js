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
  const image = $("image");

  // -- overlays: the checkboxes show or hide the layer on every image ------------------------
  const bindToggle = (checkbox, selector) => {
    if (!checkbox) return;
    const apply = () => document.querySelectorAll(selector).forEach((layer) => {
      layer.classList.toggle("hidden", !checkbox.checked);
    });
    checkbox.addEventListener("change", apply);
    apply();
  };
  bindToggle($("show-heatmap"), ".stage .heatmap");
  bindToggle($("show-boxes"), ".stage .boxes");
  const heatCodes = $("heat-codes");
  if (heatCodes) {
    // Every pane's map follows the chosen finding (a lateral beside a PA has its own map).
    heatCodes.addEventListener("change", () => {
      document.querySelectorAll(".stage").forEach((pane) => {
        const layer = pane.querySelector(".layer.heatmap");
        if (layer) layer.src = `${pane.dataset.heatmap}&codes=${encodeURIComponent(heatCodes.value)}`;
      });
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

  // -- panes: each image has its own zoom, pan and window; the controls act on the active one -
  const RESOLUTION_STEP = 256;
  const wc = $("wc");
  const ww = $("ww");
  const panes = Array.from(document.querySelectorAll(".pane")).map((el) => {
    const st = el.querySelector(".stage");
    return {
      el, stage: st, viewport: el.querySelector(".viewport"), image: el.querySelector("img.base"),
      rows: Number(st.dataset.rows), cols: Number(st.dataset.cols),
      zoom: 1, x: 0, y: 0, size: Number(st.dataset.size),
      window: [Number(st.dataset.wc), Number(st.dataset.ww)],
      presets: JSON.parse(st.dataset.presets || "{}"), preset: "default", pending: null,
    };
  });
  let active = panes[0];
  const source = (p) => Math.max(p.rows, p.cols);
  const isDefault = (p) => p.window[0] === Number(p.stage.dataset.wc)
    && p.window[1] === Number(p.stage.dataset.ww);
  const imageSrc = (p) => {
    let src = `${p.stage.dataset.image}&size=${p.size}`;
    if (!isDefault(p)) {
      src += `&wc=${encodeURIComponent(p.window[0])}&ww=${encodeURIComponent(p.window[1])}`;
    }
    return src;
  };
  const showControls = () => {
    if (!wc) return;
    wc.value = active.window[0];
    ww.value = active.window[1];
    $("wc-value").value = active.window[0].toFixed(1);
    $("ww-value").value = active.window[1].toFixed(1);
    $("zoom-value").value = `${Math.round(active.zoom * 100)}%`;
    document.querySelectorAll("button.preset").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.preset === active.preset));
    });
  };
  // The server renders the window and the size asked for; later requests replace earlier ones.
  const reload = (p, now) => {
    clearTimeout(p.pending);
    const go = () => { p.image.src = imageSrc(p); };
    if (now) go(); else p.pending = setTimeout(go, 120);
  };
  const setWindow = (p, center, width, preset) => {
    p.window = [center, Math.max(width, 1e-3)];
    p.preset = preset || null;
    if (p === active) showControls();
    reload(p, Boolean(preset));
  };
  const activate = (p) => {
    active = p;
    panes.forEach((q) => q.el.classList.toggle("active", q === p));
    showControls();
  };
  panes.forEach((p) => p.viewport.addEventListener("focus", () => activate(p)));

  // -- layout: the viewport fills the window below it, the image is contained in it ---------
  const fitScale = (p) => Math.min(p.viewport.clientWidth / p.cols, p.viewport.clientHeight / p.rows);
  const layout = (p) => {
    const scale = fitScale(p) * p.zoom;
    const width = p.cols * scale;
    const height = p.rows * scale;
    const st = p.stage.style;
    st.width = `${width}px`;
    st.height = `${height}px`;
    st.left = `${(p.viewport.clientWidth - width) / 2 + p.x}px`;
    st.top = `${(p.viewport.clientHeight - height) / 2 + p.y}px`;
    // Full resolution when zoomed: ask for what is displayed, in screen pixels, never less
    // than what is already loaded and never more than the source has.
    const wanted = Math.max(width, height) * (window.devicePixelRatio || 1);
    const size = Math.min(source(p), Math.ceil(wanted / RESOLUTION_STEP) * RESOLUTION_STEP);
    if (size > p.size) {
      p.size = size;
      reload(p, false);
    }
    if (p === active) showControls();
  };
  const sizeViewports = () => {
    const top = panes[0].viewport.getBoundingClientRect().top + window.scrollY;
    const below = 56; // the hint line and the page's margin
    const height = Math.max(260, window.innerHeight - top - below);
    panes.forEach((p) => { p.viewport.style.height = `${Math.round(height)}px`; });
    panes.forEach(layout);
  };
  const zoomAt = (p, factor, cx, cy) => {
    const zoom = Math.max(0.25, Math.min(16, p.zoom * factor));
    const vw = p.viewport.clientWidth;
    const vh = p.viewport.clientHeight;
    const px = cx === undefined ? vw / 2 : cx;
    const py = cy === undefined ? vh / 2 : cy;
    const ratio = zoom / p.zoom;
    p.x = px - vw / 2 - (px - vw / 2 - p.x) * ratio;
    p.y = py - vh / 2 - (py - vh / 2 - p.y) * ratio;
    p.zoom = zoom;
    layout(p);
  };
  const fit = (p) => { p.zoom = 1; p.x = 0; p.y = 0; layout(p); };
  const pan = (p, dx, dy) => { p.x += dx; p.y += dy; layout(p); };
  const applyPreset = (name) => panes.forEach((p) => {
    const w = p.presets[name];
    if (w) setWindow(p, w[0], w[1], name);
  });

  $("zoom-in").addEventListener("click", () => zoomAt(active, 1.25));
  $("zoom-out").addEventListener("click", () => zoomAt(active, 1 / 1.25));
  $("zoom-fit").addEventListener("click", () => fit(active));
  document.querySelectorAll("button.preset").forEach((b) => {
    b.addEventListener("click", () => applyPreset(b.dataset.preset));
  });
  if (wc && ww) {
    const typed = () => setWindow(active, Number(wc.value), Number(ww.value), null);
    wc.addEventListener("input", typed);
    ww.addEventListener("input", typed);
  }
  window.addEventListener("resize", sizeViewports);

  // -- keys: 1-4 presets, + - 0 zoom, f fit, arrows pan, p w m choose what a drag does --------
  const PRESET_KEYS = Array.from(document.querySelectorAll("button.preset")).map((b) => b.dataset.preset);
  const tool = () => (document.querySelector("input[name=tool]:checked") || {}).value || "pan";
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    const p = active;
    const k = event.key;
    const step = 40;
    if (/^[1-9]$/.test(k) && PRESET_KEYS[Number(k) - 1]) applyPreset(PRESET_KEYS[Number(k) - 1]);
    else if (k === "+" || k === "=") zoomAt(p, 1.25);
    else if (k === "-" || k === "_") zoomAt(p, 1 / 1.25);
    else if (k === "0" || k === "f") fit(p);
    else if (k.startsWith("Arrow") && event.target.closest && event.target.closest(".viewport")) {
      // Arrows pan only with an image focused: elsewhere they scroll the page as usual.
      const move = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[k];
      pan(p, move[0], move[1]);
    }
    else if ({ p: "tool-pan", w: "tool-window", m: "tool-mark" }[k]) {
      const radio = $({ p: "tool-pan", w: "tool-window", m: "tool-mark" }[k]);
      if (!radio) return;
      radio.checked = true;
    } else return;
    event.preventDefault();
  });

  // -- mouse: wheel zooms at the pointer; drag pans or sets the window (right button: always
  //    the window); double-click fits. Marking (the "mark" tool) is handled further down. ----
  panes.forEach((p) => {
    const vp = p.viewport;
    vp.addEventListener("wheel", (event) => {
      event.preventDefault();
      activate(p);
      const r = vp.getBoundingClientRect();
      zoomAt(p, event.deltaY < 0 ? 1.25 : 1 / 1.25, event.clientX - r.left, event.clientY - r.top);
    }, { passive: false });
    vp.addEventListener("dblclick", () => fit(p));
    vp.addEventListener("contextmenu", (event) => event.preventDefault());
    let drag = null;
    vp.addEventListener("pointerdown", (event) => {
      activate(p);
      const mode = event.button === 2 ? "window" : event.button === 1 || event.shiftKey ? "pan" : tool();
      if (mode === "mark") return; // the marking handlers below take it (first image only)
      drag = { mode, x: event.clientX, y: event.clientY, px: p.x, py: p.y, window: p.window.slice() };
      vp.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    vp.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (drag.mode === "pan") {
        p.x = drag.px + dx;
        p.y = drag.py + dy;
        layout(p);
      } else {
        // Right: wider window; down: higher level. A full drag across the image spans about
        // the default window's width.
        const unit = Number(p.stage.dataset.ww) / Math.max(200, vp.clientWidth);
        setWindow(p, drag.window[0] + dy * unit, drag.window[1] + dx * unit, null);
      }
    });
    const end = () => { drag = null; };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", end);
  });
  activate(active);
  sizeViewports();

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
    if (event.button !== 0 || event.shiftKey || tool() !== "mark") return;
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
