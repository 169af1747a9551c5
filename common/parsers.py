"""The JSON parser every REST endpoint uses (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

A module of its own: DRF imports its parser classes while ``rest_framework.views``
is still loading, so this must not import views (``common.api`` does).
"""

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing JSON nested deeper than the decoder's stack.

    ``'[' * 50000`` makes ``json.load`` raise RecursionError: the client's
    malformed input (400 ``malformed_json``), not our crash. The body's size
    is bounded before this runs: DRF reads ``request.body``, which Django
    caps at DATA_UPLOAD_MAX_MEMORY_SIZE (``common.api.exception_handler``
    answers 413).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
