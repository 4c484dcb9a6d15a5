"""A server-side SVG picture of a prompt flow's DAG, laid out like promptflow's VS Code graph view.

Pure Python (stdlib only) so it can be used and tested without Django. ``render_dag_svg`` takes the
summary dict produced by flow validation::

    {"inputs": {name: {...}}, "outputs": {name: {"reference": "${node.output...}", ...}},
     "nodes": [{"name": ..., "type": ..., "depends_on": [...], "flow_inputs": [...], "connection": ...}]}

and returns a standalone ``<svg>`` string. The layout runs top to bottom: one "inputs" box, the nodes in
layers by longest path from the inputs (a node without dependencies is in layer 1), then one "outputs"
box. Hooks for tests and pages:

* each node is ``<g class="dag-node" data-node=NAME data-type=TYPE data-layer=N transform="translate(x,y)">``;
* the two boxes are ``<g class="dag-io" data-io="inputs|outputs" data-layer=...>`` (layer 0 and last + 1);
* each edge is ``<path class="dag-edge" data-from=A data-to=B>``, where A/B are node names or the
  words ``inputs`` / ``outputs``. Edges are distinct (from, to) pairs: two outputs read from the same
  node give one edge into the outputs box.

The input is never trusted to be well formed: unknown dependencies are ignored, duplicate node names
are drawn once, and a cycle puts the nodes that cannot be ordered into one extra layer.
"""

import re
from itertools import pairwise
from xml.sax.saxutils import escape

SVG_NS = "http://www.w3.org/2000/svg"

NODE_W = 200
NODE_H = 52
IO_W = NODE_W
WAYPOINT_W = 12  # room for an edge passing through a layer
WAYPOINT_GAP = 12
H_GAP = 40
V_GAP = 56
PAD = 24
RADIUS = 8
STRIPE_W = 6
IO_HEADER_H = 30
IO_LINE_H = 16
IO_MAX_LINES = 8
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

NAME_CHARS = 24  # about what fits in a node box at 13px bold
DETAIL_CHARS = 28  # at 11px
IO_CHARS = 26

TYPE_COLOURS = {
    "llm": "#7c3aed",
    "python": "#2563eb",
    "prompt": "#059669",
    "other": "#6b7280",
}
IO_COLOUR = "#0f766e"
EDGE_COLOUR = "#94a3b8"
BORDER_COLOUR = "#cbd5e1"
TEXT_COLOUR = "#0f172a"
MUTED_COLOUR = "#64748b"

# A row item: a node (its name), the inputs or outputs box, or an edge's waypoint (edge index, layer).
# The two boxes get keys no node name or waypoint can equal, so a node called "inputs" cannot clash.
Item = str | tuple[int, int]
INPUTS: Item = (-1, 0)
OUTPUTS: Item = (-1, 1)
LABELS = {INPUTS: "inputs", OUTPUTS: "outputs"}

NODE_REF = re.compile(r"^\s*\$\{\s*([^.{}\s]+)\.output\s*(?:[.\[}])")
INPUT_REF = re.compile(r"^\s*\$\{\s*inputs\.([^}\s]+)\s*\}")
ANY_NODE_REF = re.compile(r"\$\{\s*([^.{}\s]+)\.output\b")
ANY_INPUT_REF = re.compile(r"\$\{\s*inputs\.([^.}\s\[]+)")
# Characters XML 1.0 forbids even when escaped.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def render_dag_svg(flow: dict) -> str:
    """Return a standalone SVG document (a string) picturing the flow's inputs, nodes and outputs."""
    flow = flow if isinstance(flow, dict) else {}
    input_names = _names(flow.get("inputs"))
    outputs = flow.get("outputs") if isinstance(flow.get("outputs"), dict) else {}
    output_names = _names(outputs)
    nodes = _nodes(flow.get("nodes"))
    known = {node["name"] for node in nodes}

    deps = {node["name"]: [d for d in node["depends_on"] if d in known and d != node["name"]] for node in nodes}
    layer_of = _assign_layers([node["name"] for node in nodes], deps)
    layer_count = max(layer_of.values(), default=0)

    # Edges, as distinct (from, to) pairs in a stable order.
    edges: list[tuple[Item, Item]] = []
    for node in nodes:
        if node["flow_inputs"]:
            edges.append((INPUTS, node["name"]))
        edges.extend((dep, node["name"]) for dep in deps[node["name"]])
    for name in output_names:
        spec = outputs.get(name)
        reference = spec.get("reference") if isinstance(spec, dict) else None
        if not isinstance(reference, str):
            continue
        if INPUT_REF.match(reference):
            edges.append((INPUTS, OUTPUTS))
        elif (match := NODE_REF.match(reference)) and match.group(1) in known:
            edges.append((match.group(1), OUTPUTS))
    edges = list(dict.fromkeys(edges))

    # Layers: 0 is the inputs box, 1..layer_count the nodes, layer_count + 1 the outputs box. An edge that
    # skips layers gets a narrow "waypoint" in each layer it crosses (Sugiyama's dummy nodes), so it is
    # routed through the gaps between boxes instead of behind them.
    rank = {INPUTS: 0, OUTPUTS: layer_count + 1, **layer_of}
    rows: list[list[Item]] = [[INPUTS]] + [[] for _ in range(layer_count)] + [[OUTPUTS]]
    for node in nodes:
        rows[layer_of[node["name"]]].append(node["name"])
    chains: list[list[Item]] = []
    preds: dict[Item, list[Item]] = {}
    for index, (source, target) in enumerate(edges):
        chain: list[Item] = [source]
        for layer in range(rank[source] + 1, rank[target]):
            waypoint = (index, layer)
            rows[layer].append(waypoint)
            chain.append(waypoint)
        chain.append(target)
        chains.append(chain)
        for before, after in pairwise(chain):
            preds.setdefault(after, []).append(before)

    content_w = max(_row_width(row) for row in rows)
    width = content_w + 2 * PAD
    centre = PAD + content_w / 2
    inputs_h = _io_height(input_names)
    outputs_h = _io_height(output_names)

    # Place row by row, each ordered by the barycenter of its already placed predecessors.
    centres: dict[Item, float] = {}
    boxes: dict[Item, tuple[float, float, float, float]] = {}  # (x, y, w, h) in canvas coordinates
    tops: dict[int, float] = {}
    y: float = PAD
    for layer, row in enumerate(rows):
        rows[layer] = row = _order_row(row, preds, centres, centre)
        tops[layer] = y
        row_h = inputs_h if layer == 0 else outputs_h if layer == len(rows) - 1 else NODE_H
        x = centre - _row_width(row) / 2
        for position, item in enumerate(row):
            if position:
                x += _gap(row[position - 1], item)
            item_w = _item_width(item)
            centres[item] = x + item_w / 2
            if _is_box(item):
                boxes[item] = (x, y, item_w, row_h)
            x += item_w
        y += row_h + V_GAP
    height = y - V_GAP + PAD

    parts = [
        f'<svg xmlns="{SVG_NS}" role="img" aria-label="Flow graph" class="dag" '
        f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'font-family="{_attr(FONT)}" font-size="13">',
        "<defs>"
        '<marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{EDGE_COLOUR}"/></marker>'
        "</defs>",
        '<g class="dag-edges">',
        *_edge_paths(chains, boxes, centres, tops),
        "</g>",
        _io_box("inputs", input_names, flow.get("inputs"), boxes[INPUTS], layer=0),
    ]
    by_name = {node["name"]: node for node in nodes}
    for layer in range(1, layer_count + 1):
        parts.extend(_node_box(by_name[name], boxes[name], layer) for name in rows[layer] if isinstance(name, str))
    parts.append(_io_box("outputs", output_names, outputs, boxes[OUTPUTS], layer=layer_count + 1))
    parts.append("</svg>")
    return "".join(parts)


# --- reading the input -----------------------------------------------------------------------------


def _names(value) -> list[str]:
    """Input or output names from a dict (its keys) or a list (of names or {"name": ...} dicts)."""
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, dict):
                item = item.get("name")
            if isinstance(item, str) and item:
                names.append(item)
        return list(dict.fromkeys(names))
    return []


def _str_list(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set):
        return list(dict.fromkeys(str(item) for item in value if item is not None))
    return []


def _nodes(value) -> list[dict]:
    """Normalised nodes: name, type, connection, depends_on, flow_inputs. Drops unnamed and repeated names.

    ``depends_on`` / ``flow_inputs`` are read from the node's ``inputs`` references when the keys are
    absent, so a raw flow.dag.yaml also draws.
    """
    nodes: list[dict] = []
    seen: set[str] = set()
    for raw in value if isinstance(value, list) else []:
        if not isinstance(raw, dict):
            continue
        name = raw.get("name")
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str) or not name or name in seen:
            continue
        seen.add(name)
        node_inputs = raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}
        references = [value for value in node_inputs.values() if isinstance(value, str)]
        if "depends_on" in raw:
            depends_on = _str_list(raw.get("depends_on"))
        else:
            depends_on = list(dict.fromkeys(m for ref in references for m in ANY_NODE_REF.findall(ref)))
            depends_on = [d for d in depends_on if d != "inputs"]
        if "flow_inputs" in raw:
            flow_inputs = _str_list(raw.get("flow_inputs"))
        else:
            flow_inputs = list(dict.fromkeys(m for ref in references for m in ANY_INPUT_REF.findall(ref)))
        node_type = raw.get("type")
        connection = raw.get("connection")
        nodes.append(
            {
                "name": name,
                "type": str(node_type) if node_type not in (None, "") else "",
                "connection": str(connection) if connection not in (None, "") else "",
                "depends_on": depends_on,
                "flow_inputs": flow_inputs,
            }
        )
    return nodes


# --- layout ----------------------------------------------------------------------------------------


def _assign_layers(names: list[str], deps: dict[str, list[str]]) -> dict[str, int]:
    """Longest path from the inputs: 1 + the deepest dependency's layer (layer 1 if none).

    Nodes left over because they sit on (or behind) a cycle go into one extra layer.
    """
    layer_of: dict[str, int] = {}
    remaining = list(names)
    while remaining:
        ready = [name for name in remaining if all(dep in layer_of for dep in deps[name])]
        if not ready:
            break
        for name in ready:
            layer_of[name] = 1 + max((layer_of[dep] for dep in deps[name]), default=0)
        ready_set = set(ready)
        remaining = [name for name in remaining if name not in ready_set]
    if remaining:
        extra = max(layer_of.values(), default=0) + 1
        for name in remaining:
            layer_of[name] = extra
    return layer_of


def _is_box(item: Item) -> bool:
    return isinstance(item, str) or item in LABELS


def _item_width(item: Item) -> float:
    if isinstance(item, str):
        return NODE_W
    return IO_W if item in LABELS else WAYPOINT_W


def _gap(left: Item, right: Item) -> float:
    return H_GAP if _is_box(left) and _is_box(right) else WAYPOINT_GAP


def _row_width(row: list[Item]) -> float:
    return sum(_item_width(item) for item in row) + sum(_gap(a, b) for a, b in pairwise(row))


def _order_row(row: list[Item], preds: dict[Item, list[Item]], centres: dict[Item, float], centre: float):
    """Sort a row by the mean x of each item's already placed predecessors (barycenter heuristic).

    An item without placed predecessors keeps the x its original position in the row would give it.
    """
    provisional = centre - _row_width(row) / 2
    fallback = []
    for position, item in enumerate(row):
        if position:
            provisional += _gap(row[position - 1], item)
        fallback.append(provisional + _item_width(item) / 2)
        provisional += _item_width(item)

    def key(entry: tuple[int, Item]) -> float:
        position, item = entry
        xs = [centres[p] for p in preds.get(item, []) if p in centres]
        return sum(xs) / len(xs) if xs else fallback[position]

    return [item for _, item in sorted(enumerate(row), key=key)]


def _io_height(names: list[str]) -> float:
    lines = IO_MAX_LINES + 1 if len(names) > IO_MAX_LINES else max(len(names), 1)  # "+ N more" / "none"
    return IO_HEADER_H + lines * IO_LINE_H + 8


def _ports(box: tuple, count: int) -> list[float]:
    """x positions spreading `count` edge ends along the middle of a box's top or bottom side."""
    x, _, w, _ = box
    if count <= 1:
        return [x + w / 2] * count
    step = min(18.0, w * 0.6 / (count - 1))
    return [x + w / 2 + (i - (count - 1) / 2) * step for i in range(count)]


def _edge_paths(
    chains: list[list[Item]], boxes: dict[Item, tuple], centres: dict[Item, float], tops: dict[int, float]
) -> list[str]:
    """One cubic Bezier path per edge: box bottom -> (through each waypoint's row) -> box top."""
    start_x: dict[int, float] = {}
    end_x: dict[int, float] = {}
    for name, box in boxes.items():
        # Spread the edges leaving (entering) a box in the order of where they go next (come from).
        outgoing = sorted((i for i, c in enumerate(chains) if c[0] == name), key=lambda i: centres[chains[i][1]])
        start_x.update(zip(outgoing, _ports(box, len(outgoing)), strict=True))
        incoming = sorted((i for i, c in enumerate(chains) if c[-1] == name), key=lambda i: centres[chains[i][-2]])
        end_x.update(zip(incoming, _ports(box, len(incoming)), strict=True))

    paths = []
    for index, chain in enumerate(chains):
        source, target = chain[0], chain[-1]
        # Alternating points: the bottom of something, then the top of the next thing.
        points = [(start_x[index], boxes[source][1] + boxes[source][3])]
        for waypoint in chain[1:-1]:
            top = tops[waypoint[1]]
            points += [(centres[waypoint], top), (centres[waypoint], top + NODE_H)]
        points.append((end_x[index], boxes[target][1]))
        d = [f"M{_n(points[0][0])},{_n(points[0][1])}"]
        for step, ((x1, y1), (x2, y2)) in enumerate(pairwise(points)):
            if step % 2:
                d.append(f"L{_n(x2)},{_n(y2)}")
            else:
                bend = max(24.0, abs(y2 - y1) / 2)
                d.append(f"C{_n(x1)},{_n(y1 + bend)} {_n(x2)},{_n(y2 - bend)} {_n(x2)},{_n(y2)}")
        paths.append(
            f'<path class="dag-edge" data-from="{_attr(LABELS.get(source, source))}" '
            f'data-to="{_attr(LABELS.get(target, target))}" d="{" ".join(d)}" '
            f'fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.5" marker-end="url(#dag-arrow)"/>'
        )
    return paths


# --- drawing ---------------------------------------------------------------------------------------


def _node_box(node: dict, box: tuple, layer: int) -> str:
    x, y, w, h = box
    node_type = node["type"]
    colour = TYPE_COLOURS.get(node_type.lower(), TYPE_COLOURS["other"])
    detail = node_type or "unknown type"
    if node_type.lower() == "llm" and node["connection"]:
        detail = f"{detail} · {node['connection']}"
    title = f"{node['name']}\n{detail}"
    label = _text(_truncate(node["name"], NAME_CHARS))
    sublabel = _text(_truncate(detail, DETAIL_CHARS))
    right = (
        f"M{STRIPE_W},0 H{_n(w - RADIUS)} A{RADIUS},{RADIUS} 0 0 1 {_n(w)},{RADIUS} "
        f"V{_n(h - RADIUS)} A{RADIUS},{RADIUS} 0 0 1 {_n(w - RADIUS)},{_n(h)} H{STRIPE_W} Z"
    )
    return (
        f'<g class="dag-node" data-node="{_attr(node["name"])}" data-type="{_attr(node_type)}" '
        f'data-layer="{layer}" transform="translate({_n(x)},{_n(y)})">'
        f"<title>{_text(title)}</title>"
        f'<rect width="{_n(w)}" height="{_n(h)}" rx="{RADIUS}" fill="{colour}"/>'
        f'<path d="{right}" fill="#ffffff"/>'
        f'<rect width="{_n(w)}" height="{_n(h)}" rx="{RADIUS}" fill="none" stroke="{BORDER_COLOUR}"/>'
        f'<text x="16" y="22" font-weight="600" fill="{TEXT_COLOUR}">{label}</text>'
        f'<text x="16" y="40" font-size="11" fill="{MUTED_COLOUR}">{sublabel}</text>'
        "</g>"
    )


def _io_box(kind: str, names: list[str], specs, box: tuple, layer: int) -> str:
    x, y, w, h = box
    specs = specs if isinstance(specs, dict) else {}
    hover = [kind] + [_describe(name, specs.get(name)) for name in names]
    parts = [
        f'<g class="dag-io" data-io="{kind}" data-layer="{layer}" transform="translate({_n(x)},{_n(y)})">',
        f"<title>{_text(chr(10).join(hover))}</title>",
        f'<rect width="{_n(w)}" height="{_n(h)}" rx="{RADIUS}" fill="#f0fdfa" stroke="{IO_COLOUR}"/>',
        f'<text x="12" y="20" font-weight="600" fill="{IO_COLOUR}">{kind}</text>',
    ]
    shown = names if len(names) <= IO_MAX_LINES else names[:IO_MAX_LINES]
    line_y = IO_HEADER_H + 10
    for name in shown:
        parts.append(
            f'<text x="12" y="{line_y}" font-size="12" fill="{TEXT_COLOUR}">{_text(_truncate(name, IO_CHARS))}</text>'
        )
        line_y += IO_LINE_H
    if len(names) > IO_MAX_LINES:
        more = f"+ {len(names) - IO_MAX_LINES} more"
        parts.append(f'<text x="12" y="{line_y}" font-size="12" fill="{MUTED_COLOUR}">{more}</text>')
    elif not names:
        parts.append(f'<text x="12" y="{line_y}" font-size="12" font-style="italic" fill="{MUTED_COLOUR}">none</text>')
    parts.append("</g>")
    return "".join(parts)


def _describe(name: str, spec) -> str:
    if not isinstance(spec, dict):
        return name
    bits = [str(spec["type"])] if spec.get("type") else []
    if isinstance(spec.get("reference"), str):
        bits.append(spec["reference"])
    if spec.get("is_chat_input") or spec.get("is_chat_output"):
        bits.append("chat")
    return f"{name} ({', '.join(bits)})" if bits else name


# --- text ------------------------------------------------------------------------------------------


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: str) -> str:
    return escape(XML_INVALID.sub("\ufffd", value))


def _attr(value: str) -> str:
    return escape(XML_INVALID.sub("\ufffd", value), {'"': "&quot;", "\n": "&#10;", "\t": "&#9;"})


def _n(value: float) -> str:
    """A coordinate without float noise: 12, 12.5."""
    value = round(value, 1)
    return str(int(value)) if value == int(value) else str(value)
