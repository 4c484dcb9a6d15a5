from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """dict lookup by a variable key: {{ outputs|get_item:name }}."""
    if not isinstance(mapping, dict):
        return ""
    value = mapping.get(key, "")
    return "" if value is None else value
