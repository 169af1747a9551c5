"""Reading and writing one value of results.json: shared by the report and its analysis."""


def fmt(value, unit: str = "") -> str:
    """Return a value for a table or a sentence: "-" for none, floats to 3 significant places or so."""
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value}{unit}"


def get(node: dict, *path, default=None):
    """Return the value at ``path`` in nested dicts, or ``default`` where a step is missing."""
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
