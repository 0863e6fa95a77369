"""Test files for ingestion: a real (minimal) PDF with a text layer, and broken ones."""

from __future__ import annotations

from pathlib import Path


def write_pdf(path: Path, *, text: str, title: str) -> Path:
    """A one-page PDF whose text layer says ``text`` and whose metadata title is ``title``."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (%s) >>" % title.encode(),
    ]
    body, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(body))
    return path


def write_corpus(directory: Path) -> dict[str, Path]:
    """Good and bad files under ``directory`` (one level nested), by role."""
    nested = directory / "nested"
    nested.mkdir(parents=True)
    files = {
        "markdown": directory / "guide.md",
        "text": nested / "notes.txt",
        "pdf": nested / "report.pdf",
        "broken_pdf": nested / "broken.pdf",
        "binary": directory / "blob.txt",
        "empty": directory / "empty.md",
    }
    files["markdown"].write_text("# Widget Guide\n\nHow to calibrate the widget spindle before the audit.\n")
    files["text"].write_text("Field notes: the gadget warehouse in Leeds stocks spare spindles.\n")
    write_pdf(files["pdf"], text="Quarterly revenue of the sprocket division grew by 12 percent.", title="Sprocket Report")
    files["broken_pdf"].write_bytes(b"%PDF-1.4 this is not a PDF body")
    files["binary"].write_bytes(b"\xff\xfe\x00\x80 not utf-8 \x81")
    files["empty"].write_text("   \n")
    (directory / "ignored.py").write_text("print('not a document')\n")
    return files
