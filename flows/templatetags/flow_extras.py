import json

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """dict lookup by a variable key: {{ outputs|get_item:name }}."""
    if not isinstance(mapping, dict):
        return ""
    value = mapping.get(key, "")
    return "" if value is None else value


@register.filter
def as_json(value) -> str:
    """Strings as they are; anything else as readable JSON, the way promptflow shows outputs."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)
