// The threshold explorer: a slider over the predicted probability and everything it moves
// (the confusion matrix, six rates with their bootstrap CIs, the operating point on the ROC
// and precision-recall curves, the marker on the histogram), drawn in the browser from the
// table nsclc_engine.dashboard.threshold.explorer_table computed once per run and split.
// A threshold t selects the row counting the distinct scores >= t, as the server does.
// The value goes back to the server (for the address bar, the cells' patients and saving)
// once the slider rests, without holding up what the page shows.

const NS = "http://www.w3.org/2000/svg";
const SIZE = 260;
const PAD = 38;

function rowAt(scores, t) {
  // the number of scores >= t; scores are sorted highest first
  let low = 0;
  let high = scores.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (scores[middle] >= t) low = middle + 1;
    else high = middle;
  }
  return low;
}

function fixed(value, digits = 3) {
  return value === null || value === undefined ? "n/a" : value.toFixed(digits);
}

function element(tag, attributes = {}, parent = null, namespace = null) {
  const made = namespace ? document.createElementNS(namespace, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (parent) parent.appendChild(made);
  return made;
}

function axes(svg, xLabel, yLabel) {
  const x = (v) => PAD + v * (SIZE - PAD - 10);
  const y = (v) => SIZE - PAD - v * (SIZE - PAD - 10);
  element("rect", { x: x(0), y: y(1), width: x(1) - x(0), height: y(0) - y(1), class: "frame" }, svg, NS);
  for (const tick of [0, 0.5, 1]) {
    element("text", { x: x(tick), y: SIZE - PAD + 14, class: "tick", "text-anchor": "middle" }, svg, NS).textContent = tick;
    element("text", { x: PAD - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, svg, NS).textContent = tick;
  }
  element("text", { x: (x(0) + x(1)) / 2, y: SIZE - 6, class: "axis", "text-anchor": "middle" }, svg, NS).textContent = xLabel;
  const label = element("text", { x: 12, y: (y(0) + y(1)) / 2, class: "axis", "text-anchor": "middle" }, svg, NS);
  label.setAttribute("transform", `rotate(-90 12 ${(y(0) + y(1)) / 2})`);
  label.textContent = yLabel;
  return { x, y };
}

function curve(svg, scale, xs, ys, className) {
  const points = [];
  xs.forEach((xv, i) => {
    if (xv !== null && ys[i] !== null) points.push(`${scale.x(xv).toFixed(1)},${scale.y(ys[i]).toFixed(1)}`);
  });
  element("polyline", { points: points.join(" "), class: className }, svg, NS);
}

function build(root, data) {
  root.innerHTML = "";
  const top = element("div", { class: "tx-top" }, root);
  const label = element("label", { class: "tx-label" }, top);
  label.textContent = "Threshold";
  const slider = element("input", {
    type: "range", min: "0", max: "1", step: "0.001", "aria-label": "Threshold",
    class: "tx-slider",
  }, top);
  const shown = element("span", { class: "tx-value" }, top);

  const metrics = element("div", { class: "tx-metrics" }, root);
  const metricCells = {};
  for (const [key, entry] of Object.entries(data.metrics)) {
    const box = element("div", { class: "tx-metric" }, metrics);
    element("div", { class: "tx-metric-label" }, box).textContent = entry.label;
    const value = element("div", { class: "tx-metric-value", "data-metric": key }, box);
    const ci = element("div", { class: "tx-metric-ci" }, box);
    metricCells[key] = { value, ci };
  }

  const middle = element("div", { class: "tx-row" }, root);
  const matrixBox = element("div", { class: "tx-matrix-box" }, middle);
  element("div", { class: "tx-heading" }, matrixBox).textContent = "Confusion matrix";
  const matrix = element("table", { class: "tx-matrix", "data-role": "confusion-matrix" }, matrixBox);
  const head = element("tr", {}, matrix);
  for (const text of ["", "predicted negative", "predicted positive"]) element("th", {}, head).textContent = text;
  const cells = {};
  for (const [name, first, second] of [["true negative", "tn", "fp"], ["true positive", "fn", "tp"]]) {
    const row = element("tr", {}, matrix);
    element("th", {}, row).textContent = name;
    cells[first] = element("td", { "data-cell": first }, row);
    cells[second] = element("td", { "data-cell": second }, row);
  }
  element("div", { class: "tx-caption" }, matrixBox).textContent = `${data.positive_class}; n = ${data.n}`;

  const roc = element("svg", { viewBox: `0 0 ${SIZE} ${SIZE}`, class: "tx-plot", role: "img", "aria-label": "ROC curve" }, middle, NS);
  const rocScale = axes(roc, "1 - specificity", "sensitivity");
  element("line", { x1: rocScale.x(0), y1: rocScale.y(0), x2: rocScale.x(1), y2: rocScale.y(1), class: "chance" }, roc, NS);
  curve(roc, rocScale, data.roc.fpr, data.roc.tpr, "curve");
  element("text", { x: rocScale.x(0.98), y: rocScale.y(0.05), class: "tick", "text-anchor": "end" }, roc, NS).textContent = `AUC ${fixed(data.auc)}`;
  const rocPoint = element("circle", { r: 5, class: "point" }, roc, NS);

  const pr = element("svg", { viewBox: `0 0 ${SIZE} ${SIZE}`, class: "tx-plot", role: "img", "aria-label": "Precision-recall curve" }, middle, NS);
  const prScale = axes(pr, "recall (sensitivity)", "precision (PPV)");
  element("line", { x1: prScale.x(0), y1: prScale.y(data.prevalence), x2: prScale.x(1), y2: prScale.y(data.prevalence), class: "chance" }, pr, NS);
  curve(pr, prScale, data.pr.recall, data.pr.precision, "curve");
  element("text", { x: prScale.x(0.98), y: prScale.y(0.95), class: "tick", "text-anchor": "end" }, pr, NS).textContent = `AP ${fixed(data.average_precision)}`;
  const prPoint = element("circle", { r: 5, class: "point" }, pr, NS);

  const histogram = element("svg", { viewBox: `0 0 ${SIZE * 3} 170`, class: "tx-histogram", role: "img", "aria-label": "Predicted probability by true class" }, root, NS);
  const h = data.histogram;
  const most = Math.max(1, ...h.count_0, ...h.count_1);
  const hx = (v) => PAD + v * (SIZE * 3 - PAD - 10);
  const hy = (v) => 140 - (v / most) * 125;
  for (const [counts, className] of [[h.count_0, "bar0"], [h.count_1, "bar1"]]) {
    counts.forEach((count, i) => {
      element("rect", {
        x: hx(h.edges[i]) + 1, y: hy(count), width: Math.max(1, hx(h.edges[i + 1]) - hx(h.edges[i]) - 2),
        height: 140 - hy(count), class: className,
      }, histogram, NS);
    });
  }
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    element("text", { x: hx(tick), y: 156, class: "tick", "text-anchor": "middle" }, histogram, NS).textContent = tick;
  }
  element("text", { x: hx(1), y: 14, class: "tick", "text-anchor": "end" }, histogram, NS).textContent = "patients by predicted probability: true 0 (blue), true 1 (red)";
  const marker = element("line", { y1: 10, y2: 140, class: "marker" }, histogram, NS);

  function show(t, started) {
    const row = rowAt(data.scores, t);
    shown.textContent = t.toFixed(3);
    root.dataset.threshold = t.toFixed(3);
    for (const name of ["tn", "fp", "fn", "tp"]) {
      const count = data.counts[name][row];
      cells[name].textContent = `${name.toUpperCase()} ${count}`;
      cells[name].style.setProperty("--share", (count / Math.max(1, data.n)).toFixed(3));
    }
    for (const [key, entry] of Object.entries(data.metrics)) {
      const value = entry.value[row];
      const [low, high] = entry.ci[row];
      metricCells[key].value.textContent = fixed(value);
      metricCells[key].ci.textContent = value === null ? "undefined here" : `95% CI ${fixed(low)}-${fixed(high)}`;
    }
    const sensitivity = data.metrics.sensitivity.value[row];
    const specificity = data.metrics.specificity.value[row];
    const precision = data.metrics.precision.value[row];
    rocPoint.setAttribute("visibility", sensitivity === null || specificity === null ? "hidden" : "visible");
    if (sensitivity !== null && specificity !== null) {
      rocPoint.setAttribute("cx", rocScale.x(1 - specificity));
      rocPoint.setAttribute("cy", rocScale.y(sensitivity));
    }
    prPoint.setAttribute("visibility", sensitivity === null || precision === null ? "hidden" : "visible");
    if (sensitivity !== null && precision !== null) {
      prPoint.setAttribute("cx", prScale.x(sensitivity));
      prPoint.setAttribute("cy", prScale.y(precision));
    }
    marker.setAttribute("x1", hx(t));
    marker.setAttribute("x2", hx(t));
    if (started !== undefined) {
      requestAnimationFrame(() => {
        root.__latencies.push(performance.now() - started);
        root.dataset.changes = String(root.__latencies.length);
      });
    }
  }

  root.__latencies = [];
  root.__show = show;
  root.__slider = slider;
  let pressed;
  slider.addEventListener("keydown", (event) => { pressed = event.timeStamp; });
  slider.addEventListener("pointerdown", (event) => { pressed = event.timeStamp; });
  slider.addEventListener("input", () => {
    show(Number(slider.value), pressed);
    pressed = undefined;
    root.__send(Number(slider.value));
  });
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let root = parentElement.querySelector(".tx-root");
  if (!root || root.dataset.table !== data.table) {
    root = root || element("div", { class: "tx-root" }, parentElement);
    root.dataset.table = data.table;
    build(root, data);
    root.__echo = undefined;
    root.__server = undefined;
  }
  let timer;
  root.__send = (t) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      root.__echo = Number(t.toFixed(3));
      setStateValue("threshold", root.__echo);
    }, 250);
  };
  // the server's threshold: shown unless it only echoes a value this slider sent
  if (data.threshold !== root.__server) {
    root.__server = data.threshold;
    if (data.threshold !== root.__echo) {
      root.__slider.value = String(data.threshold);
      root.__show(data.threshold);
    }
  }
  return () => clearTimeout(timer);
}
