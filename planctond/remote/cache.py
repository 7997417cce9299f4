"""The last remote config in force, on disk in the state directory, so a host that starts while
the server is down runs what it ran before.

One JSON file, written atomically (`write_atomic`): the document's text as it was received, its
URL, its validators (so the first request after a restart can still be answered 304) and a
digest of the text. Reading never raises: a missing, damaged or foreign file is no cache (said
once, with the reason), and the daemon waits for the server instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Final

from planctond import constants as C
from planctond.config.files import read_limited, write_atomic
from planctond.config.remote import RemoteDocument

log = logging.getLogger(__name__)

FORMAT: Final = 1
# JSON escapes at most double a config's text (newlines, quotes), plus a few fields.
LIMIT: Final = 4 * C.MAX_CONFIG_SIZE + 64 * 1024


class RemoteCache:
    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, C.REMOTE_CACHE_NAME)

    def load(self, url: str) -> RemoteDocument | None:
        """The cached document of `url`; None when there is none usable (why is logged)."""
        try:
            data = read_limited(self.path, LIMIT)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the remote config cache %s: %s", self.path, exc)
            return None
        try:
            document = _parse(data)
        except ValueError as exc:
            log.warning("the remote config cache %s is not usable (%s): ignored", self.path, exc)
            return None
        if document.url != url:
            log.info("the remote config cache %s is of %s, not %s: ignored", self.path, document.url, url)  # fmt: skip
            return None
        return document

    def save(self, document: RemoteDocument) -> None:
        """Raises OSError (the caller says so; the config in force is not affected)."""
        payload = {
            "format": FORMAT,
            "url": document.url,
            "etag": document.etag,
            "last_modified": document.last_modified,
            "fetched": document.fetched,
            "sha256": document.digest,
            "text": document.text,
        }
        write_atomic(self.path, json.dumps(payload, indent=1).encode("utf-8") + b"\n")


def _parse(data: bytes) -> RemoteDocument:
    try:
        doc: Any = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a cache this version wrote")
    url, text, fetched = doc.get("url"), doc.get("text"), doc.get("fetched")
    etag, modified = doc.get("etag"), doc.get("last_modified")
    if not (isinstance(url, str) and isinstance(text, str)):
        raise ValueError("no url or text")
    if not all(v is None or isinstance(v, str) for v in (etag, modified)):
        raise ValueError("bad validators")
    if not isinstance(fetched, int | float) or isinstance(fetched, bool):
        raise ValueError("bad fetch time")
    document = RemoteDocument(url, text, etag, modified, float(fetched))
    if doc.get("sha256") != hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest():
        raise ValueError("its text does not match its digest")
    return document
