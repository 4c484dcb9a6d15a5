"""The server-side SVG picture of a flow's DAG (flows/dag.py): valid XML, layers, edges, escaping."""

import re
import threading
import xml.etree.ElementTree as ET

from flows.dag import render_dag_svg

SVG = "{http://www.w3.org/2000/svg}"

WEB_CLASSIFICATION = {
    "inputs": {
        "url": {"type": "string", "default": "https://example.com/a", "is_chat_input": False},
        "location": {"type": "string", "default": "LA", "is_chat_input": False},
    },
    "outputs": {
        "category": {
            "type": "string",
            "reference": "${convert_to_dict.output.category}",
            "is_chat_output": False,
        },
        "evidence": {"type": "string", "reference": "${convert_to_dict.output.evidence}"},
        "location": {"type": "string", "reference": "${inputs.location}"},
    },
    "nodes": [
        {
            "name": "fetch_url_parts",
            "type": "python",
            "source": "fetch_url_parts.py",
            "depends_on": [],
            "flow_inputs": ["url"],
        },
        {
            "name": "classify_prompt",
            "type": "prompt",
            "source": "classify.jinja2",
            "depends_on": ["fetch_url_parts"],
            "flow_inputs": ["location"],
        },
        {
            "name": "classify",
            "type": "python",
            "source": "classify.py",
            "depends_on": ["classify_prompt", "fetch_url_parts"],
            "flow_inputs": [],
        },
        {
            "name": "convert_to_dict",
            "type": "python",
            "source": "convert_to_dict.py",
            "depends_on": ["classify"],
            "flow_inputs": [],
        },
    ],
}

CHAT = {
    "inputs": {"question": {"type": "string", "is_chat_input": True}},
    "outputs": {"answer": {"type": "string", "reference": "${chat.output}", "is_chat_output": True}},
    "nodes": [
        {
            "name": "chat",
            "type": "llm",
            "source": "chat.jinja2",
            "connection": "open_ai_connection",
            "api": "chat",
            "depends_on": [],
            "flow_inputs": ["question"],
        }
    ],
}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def node_groups(root: ET.Element) -> dict[str, ET.Element]:
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "dag-node"]
    names = [g.get("data-node") for g in groups]
    assert len(names) == len(set(names)), f"a node is drawn twice: {names}"
    return dict(zip(names, groups, strict=True))


def edges(root: ET.Element) -> list[tuple[str, str]]:
    return [(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG}path") if p.get("class") == "dag-edge"]


def translate(group: ET.Element) -> tuple[float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", group.get("transform"))
    assert match, group.get("transform")
    return float(match.group(1)), float(match.group(2))


def test_it_returns_a_standalone_svg_document():
    """The result parses as XML and is an <svg> with a label, a viewBox and a matching size."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Flow graph"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert float(root.get("width")) > 0
    assert float(root.get("height")) > 0


def test_it_draws_every_node_exactly_once():
    """Each node has one <g class="dag-node" data-node=NAME> group, plus one inputs and one outputs box."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    assert set(node_groups(root)) == {"fetch_url_parts", "classify_prompt", "classify", "convert_to_dict"}
    assert [g.get("data-io") for g in root.iter(f"{SVG}g") if g.get("class") == "dag-io"] == [
        "inputs",
        "outputs",
    ]


def test_it_puts_nodes_in_layers_by_longest_path_from_the_inputs():
    """A node sits one layer below its deepest dependency, and lower layers are drawn further down."""
    groups = node_groups(parse(render_dag_svg(WEB_CLASSIFICATION)))
    layers = {name: int(group.get("data-layer")) for name, group in groups.items()}
    assert layers == {"fetch_url_parts": 1, "classify_prompt": 2, "classify": 3, "convert_to_dict": 4}
    ys = {name: translate(group)[1] for name, group in groups.items()}
    assert ys["fetch_url_parts"] < ys["classify_prompt"] < ys["classify"] < ys["convert_to_dict"]


def test_it_places_the_inputs_box_above_and_the_outputs_box_below_the_nodes():
    """The inputs box is at the top (layer 0) and the outputs box at the bottom (last layer + 1)."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    boxes = {g.get("data-io"): g for g in root.iter(f"{SVG}g") if g.get("class") == "dag-io"}
    node_ys = [translate(g)[1] for g in node_groups(root).values()]
    assert boxes["inputs"].get("data-layer") == "0"
    assert boxes["outputs"].get("data-layer") == "5"
    assert translate(boxes["inputs"])[1] < min(node_ys)
    assert translate(boxes["outputs"])[1] > max(node_ys)


def test_it_draws_one_edge_per_distinct_connection():
    """Edges: inputs->node, dep->node, node->outputs and inputs->outputs, each pair drawn once."""
    found = edges(parse(render_dag_svg(WEB_CLASSIFICATION)))
    assert sorted(found) == sorted(
        [
            ("inputs", "fetch_url_parts"),
            ("inputs", "classify_prompt"),
            ("fetch_url_parts", "classify_prompt"),
            ("classify_prompt", "classify"),
            ("fetch_url_parts", "classify"),
            ("classify", "convert_to_dict"),
            ("convert_to_dict", "outputs"),  # category and evidence share one edge
            ("inputs", "outputs"),
        ]
    )


def test_it_draws_edges_as_bezier_curves_with_an_arrowhead():
    """Every edge path is made of cubic Bezier segments and ends in the arrow marker defined in <defs>."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    marker = root.find(f"{SVG}defs/{SVG}marker")
    assert marker is not None
    paths = [p for p in root.iter(f"{SVG}path") if p.get("class") == "dag-edge"]
    assert paths
    for path in paths:
        assert path.get("d").startswith("M")
        assert "C" in path.get("d")
        assert path.get("marker-end") == f"url(#{marker.get('id')})"


def test_it_keeps_everything_inside_the_canvas():
    """All boxes and edge coordinates lie within the width and height the SVG declares."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    width, height = float(root.get("width")), float(root.get("height"))
    for group in root.iter(f"{SVG}g"):
        if group.get("class") in {"dag-node", "dag-io"}:
            x, y = translate(group)
            rect = group.find(f"{SVG}rect")
            assert 0 <= x <= width - float(rect.get("width"))
            assert 0 <= y <= height - float(rect.get("height"))
    for path in root.iter(f"{SVG}path"):
        if path.get("class") == "dag-edge":
            numbers = [float(n) for n in re.findall(r"-?[\d.]+", path.get("d"))]
            assert all(0 <= x <= width for x in numbers[0::2])
            assert all(0 <= y <= height for y in numbers[1::2])


def test_it_labels_nodes_with_their_type_and_llm_connection():
    """The second line shows the node type, and for an llm node also its connection name."""
    root = parse(render_dag_svg(CHAT))
    chat = node_groups(root)["chat"]
    texts = [t.text for t in chat.iter(f"{SVG}text")]
    assert texts[0] == "chat"
    assert "llm" in texts[1]
    assert "open_ai_connection" in texts[1]
    assert chat.get("data-type") == "llm"


def test_it_colours_the_stripe_by_node_type():
    """llm, python, prompt and other node types get four different stripe colours."""
    flow = {
        "nodes": [
            {"name": "a", "type": "llm", "depends_on": []},
            {"name": "b", "type": "python", "depends_on": []},
            {"name": "c", "type": "prompt", "depends_on": []},
            {"name": "d", "type": "custom_llm", "depends_on": []},
        ]
    }
    groups = node_groups(parse(render_dag_svg(flow)))
    colours = {name: group.find(f"{SVG}rect").get("fill") for name, group in groups.items()}
    assert len(set(colours.values())) == 4


def test_it_lists_input_and_output_names_in_their_boxes():
    """The inputs box names every flow input; the outputs box names every flow output."""
    root = parse(render_dag_svg(WEB_CLASSIFICATION))
    boxes = {g.get("data-io"): g for g in root.iter(f"{SVG}g") if g.get("class") == "dag-io"}
    assert {t.text for t in boxes["inputs"].iter(f"{SVG}text")} >= {"inputs", "url", "location"}
    assert {t.text for t in boxes["outputs"].iter(f"{SVG}text")} >= {
        "outputs",
        "category",
        "evidence",
        "location",
    }


def test_it_truncates_long_names_and_keeps_the_full_name_in_a_title():
    """A long node name is cut with an ellipsis on screen; the hover <title> has it in full."""
    name = "summarise_the_retrieved_documents_for_the_final_answer"
    root = parse(render_dag_svg({"nodes": [{"name": name, "type": "python", "depends_on": []}]}))
    group = node_groups(root)[name]
    label = next(group.iter(f"{SVG}text")).text
    assert label.endswith("…")
    assert len(label) < len(name)
    assert name.startswith(label[:-1])
    assert name in group.find(f"{SVG}title").text


def test_it_escapes_names_so_the_result_stays_valid_xml():
    """Markup characters in names, types and connections are escaped, and come back intact when parsed."""
    name = 'a<b&"c"'
    flow = {
        "inputs": {"x<y": {"type": "string"}},
        "outputs": {"o&p": {"reference": "${" + name + ".output}"}},
        "nodes": [
            {
                "name": name,
                "type": "llm",
                "connection": "<conn>&'",
                "depends_on": [],
                "flow_inputs": ["x<y"],
            }
        ],
    }
    svg = render_dag_svg(flow)
    assert "<b&" not in svg
    root = parse(svg)
    group = node_groups(root)[name]
    assert next(group.iter(f"{SVG}text")).text == name
    assert "<conn>&'" in list(group.iter(f"{SVG}text"))[1].text
    assert set(edges(root)) == {("inputs", name), (name, "outputs")}
    assert "x<y" in {t.text for t in root.iter(f"{SVG}text")}


def test_it_draws_an_empty_flow():
    """A flow with no nodes (or no keys at all) still gives a valid picture with just the two boxes."""
    for flow in ({}, {"inputs": {}, "outputs": {}, "nodes": []}):
        root = parse(render_dag_svg(flow))
        assert node_groups(root) == {}
        assert edges(root) == []
        assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "dag-io"]) == 2


def test_it_draws_inputs_straight_to_outputs_when_there_are_no_nodes():
    """An output that only echoes a flow input is an inputs->outputs edge."""
    flow = {"inputs": {"q": {}}, "outputs": {"q": {"reference": "${inputs.q}"}}, "nodes": []}
    assert edges(parse(render_dag_svg(flow))) == [("inputs", "outputs")]


def test_it_ignores_dependencies_on_unknown_nodes():
    """A depends_on or output reference naming no node draws no edge and does not move the node down."""
    flow = {
        "outputs": {"o": {"reference": "${ghost.output}"}},
        "nodes": [{"name": "a", "type": "python", "depends_on": ["ghost"], "flow_inputs": []}],
    }
    root = parse(render_dag_svg(flow))
    assert node_groups(root)["a"].get("data-layer") == "1"
    assert edges(root) == []


def test_it_draws_a_repeated_node_name_once():
    """Two nodes with the same name (invalid, but possible) give one group."""
    flow = {"nodes": [{"name": "a", "type": "python"}, {"name": "a", "type": "llm"}]}
    assert list(node_groups(parse(render_dag_svg(flow)))) == ["a"]


def test_it_puts_nodes_on_a_cycle_into_one_extra_layer_without_hanging():
    """A cycle cannot be layered; its nodes (and what depends on them) share one layer after the rest."""
    flow = {
        "nodes": [
            {"name": "start", "type": "python", "depends_on": []},
            {"name": "a", "type": "python", "depends_on": ["start", "b"]},
            {"name": "b", "type": "python", "depends_on": ["a"]},
            {"name": "after", "type": "python", "depends_on": ["b"]},
        ]
    }
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(render_dag_svg(flow)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result, "render_dag_svg did not return within 10 seconds on a cyclic flow"
    groups = node_groups(parse(result[0]))
    layers = {name: group.get("data-layer") for name, group in groups.items()}
    assert layers == {"start": "1", "a": "2", "b": "2", "after": "2"}


def test_it_orders_a_layer_to_avoid_crossing_edges():
    """Children are placed under their parents (barycenter), not in the order they were listed."""
    flow = {
        "nodes": [
            {"name": "left", "type": "python", "depends_on": []},
            {"name": "right", "type": "python", "depends_on": []},
            {"name": "child_of_right", "type": "python", "depends_on": ["right"]},
            {"name": "child_of_left", "type": "python", "depends_on": ["left"]},
        ]
    }
    xs = {name: translate(group)[0] for name, group in node_groups(parse(render_dag_svg(flow))).items()}
    assert xs["left"] < xs["right"]
    assert xs["child_of_left"] < xs["child_of_right"]


def test_it_grows_the_canvas_with_the_widest_layer():
    """More nodes side by side make a wider picture; more layers make a taller one."""
    one = parse(render_dag_svg({"nodes": [{"name": "a", "depends_on": []}]}))
    wide = parse(render_dag_svg({"nodes": [{"name": n, "depends_on": []} for n in "abcd"]}))
    tall = parse(render_dag_svg({"nodes": [{"name": "a", "depends_on": []}, {"name": "b", "depends_on": ["a"]}]}))
    assert float(wide.get("width")) > float(one.get("width"))
    assert float(tall.get("height")) > float(one.get("height"))


def test_it_keeps_a_node_named_inputs_apart_from_the_inputs_box():
    """A node called "inputs" or "outputs" is drawn as a node; the two boxes are still there."""
    flow = {
        "inputs": {"q": {}},
        "outputs": {"o": {"reference": "${outputs.output}"}},
        "nodes": [
            {"name": "inputs", "type": "python", "depends_on": [], "flow_inputs": ["q"]},
            {"name": "outputs", "type": "python", "depends_on": ["inputs"], "flow_inputs": []},
        ],
    }
    root = parse(render_dag_svg(flow))
    assert {name: g.get("data-layer") for name, g in node_groups(root).items()} == {
        "inputs": "1",
        "outputs": "2",
    }
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "dag-io"]) == 2
    assert len(edges(root)) == 3
