// A deployment's Monitoring tab: each <figure data-chart="..."> is drawn with uPlot from the JSON next to it
// (monitoring/charts.py), again whenever htmx swaps the tab's content in.
(function () {
  "use strict";
  const COLORS = ["#0f6cbd", "#c50f1f", "#107c10", "#a35f00", "#8764b8", "#038387", "#5c2e91", "#ca5010"];

  function draw(figure) {
    if (figure.dataset.drawn || typeof uPlot === "undefined") return;
    const source = document.getElementById(figure.dataset.chart);
    if (!source) return;
    const chart = JSON.parse(source.textContent);
    if (!chart.series.length) return;
    figure.dataset.drawn = "1";
    const width = Math.max(300, figure.clientWidth - 16);
    const options = {
      width: width,
      height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      series: [{}].concat(
        chart.series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: false,
          points: { show: chart.x.length < 100 },
        })),
      ),
      axes: [{}, { label: chart.unit, size: 60 }],
      legend: { live: true },
    };
    const data = [chart.x].concat(chart.series.map((s) => s.values));
    new uPlot(options, data, figure);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("figure[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:load", (event) => drawAll(event.detail.elt));
})();
