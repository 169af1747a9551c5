"""SockJS framing (pure): what goes on the wire for each transport.

Frames: ``o`` open, ``h`` heartbeat, ``a[...]`` messages, ``c[code,"reason"]``
close. ``json.dumps`` escapes every non-ASCII character, which covers the
characters the protocol requires servers to escape (U+2028, U+FFFx…), and
carries the STOMP NUL as ``\\u0000``.
"""

import json
import re

OPEN = "o"
HEARTBEAT = "h"
ANOTHER_CONNECTION = (2010, "Another connection still open")
INTERRUPTED = (1002, "Connection interrupted")
GO_AWAY = (3000, "Go away!")

STREAMING_PRELUDE = "h" * 2048 + "\n"
EVENTSOURCE_PRELUDE = "\r\n"
_CALLBACK = re.compile(r"[a-zA-Z0-9_.]{1,64}")
_SURROGATE = re.compile("[\\ud800-\\udfff]")

HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""

# The reference servers' page, byte for byte but for the script's URL: the
# script first (so SockJS exists), then the bootstrap.
IFRAME = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


class BrokenJson(ValueError):
    """The client sent something that is not a JSON string or array of strings."""


COMPACT = (",", ":")


def messages(texts: list[str]) -> str:
    return "a" + json.dumps(texts, separators=COMPACT)


def close(code: int, reason: str) -> str:
    return "c" + json.dumps([code, reason], separators=COMPACT)


def decode(payload: str) -> list[str]:
    """Return the messages of an inbound payload: a JSON array of strings, or one string."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        # RecursionError: ``[[[[…`` nested past the interpreter's limit. Nothing
        # valid nests at all, so it is broken JSON, not a server fault.
        raise BrokenJson("Broken JSON encoding.") from None
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BrokenJson("Broken JSON encoding.")
    # JSON may escape half a surrogate pair (``"\\ud800"``); such a string has
    # no UTF-8 form, so it would fail the first time anything encodes it.
    if any(_SURROGATE.search(t) for t in texts):
        raise BrokenJson("Broken JSON encoding.")
    return texts


def valid_callback(name: str | None) -> bool:
    return bool(name) and _CALLBACK.fullmatch(name) is not None


def htmlfile_prelude(callback: str) -> str:
    head = HTMLFILE_HEAD % callback
    # Old browsers render nothing before 1 KiB has arrived.
    return head + " " * max(0, 1024 - len(head)) + "\r\n\r\n"


# Per-transport wrapping of one frame.
def xhr_frame(frame: str) -> str:
    return frame + "\n"


def eventsource_frame(frame: str) -> str:
    return f"data: {frame}\r\n\r\n"


def htmlfile_frame(frame: str) -> str:
    return f"<script>\np({json.dumps(frame)});\n</script>\r\n"


def jsonp_frame(callback: str, frame: str) -> str:
    # The leading comment stops a browser from treating a reflected callback
    # name as the start of a file it offers to save (the reference servers do so).
    return f"/**/{callback}({json.dumps(frame)});\r\n"
