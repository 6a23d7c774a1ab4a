"""UTE, the Ultima Thule Encoder: chunked, distributed, frame-exact x265 encoding on rq workers."""

__version__ = "0.1.0"
