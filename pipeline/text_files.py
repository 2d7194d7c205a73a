"""Dataset text files (label files, OMG's CSVs) as open() reads them, or an error naming the file when they are not
UTF-8. Read as utf-8-sig: one saved on Windows starts with a byte-order mark, which would otherwise stick to the first
header or value. A file in another encoding (UTF-16, as Windows tools save "Unicode") gave the decoder's
UnicodeDecodeError, naming neither the file nor what to do (a traceback from the OMG lister)."""
from __future__ import annotations

import codecs
import io
from pathlib import Path

from features.errors import BadInputError


def open_text(path: Path, newline: str | None = None) -> io.StringIO:
    """The file's text, to read as open(path, newline=newline, encoding="utf-8-sig") would (csv wants newline="")."""
    raw = Path(path).read_bytes()
    try:
        return io.StringIO(raw.decode("utf-8-sig"), newline=newline)
    except UnicodeDecodeError as e:
        utf16 = raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        raise BadInputError(path, f"not UTF-8 text (byte {e.start} is {raw[e.start:e.start + 1]!r})"
                            + ("; it starts with a UTF-16 byte-order mark (saved as 'Unicode' by a Windows tool?)"
                               if utf16 else ""), "save it as UTF-8 text") from None
