"""The code editors indent by 4 spaces, as the code the Copilot learned from does.

gr.Code (CodeMirror 6) indents by 2 and has no setting for it, so a small script in the page's
head takes Tab and Enter in any code editor: Tab inserts spaces up to the next multiple of 4,
Enter keeps the line's indentation and adds 4 after a line ending in ':'. It reaches the editor
through the DOM (`.cm-content`'s tile holds the EditorView, as EditorView.findFromDOM does) and
changes the text with a plain transaction spec, so it needs nothing from CodeMirror's modules.
"""

INDENT = 4

HEAD = """<script>
document.addEventListener("keydown", (event) => {
  if ((event.key !== "Enter" && event.key !== "Tab") || event.shiftKey || event.ctrlKey || event.metaKey
      || event.altKey || event.isComposing) return;
  const content = event.target.closest && event.target.closest(".cm-content");
  const view = content && content.cmTile && content.cmTile.root && content.cmTile.root.view;
  if (!view || !view.state || view.state.readOnly) return;
  const range = view.state.selection.main;
  const line = view.state.doc.lineAt(range.from);
  const before = line.text.slice(0, range.from - line.from);
  let insert;
  if (event.key === "Tab") {
    insert = " ".repeat(INDENT - (before.length % INDENT));
  } else {
    const indent = before.match(/^ */)[0].length;
    insert = "\\n" + " ".repeat(indent + (/:\\s*$/.test(before) ? INDENT : 0));
  }
  event.preventDefault();
  event.stopPropagation();
  view.dispatch({changes: {from: range.from, to: range.to, insert},
                 selection: {anchor: range.from + insert.length}, scrollIntoView: true, userEvent: "input"});
}, true);
</script>""".replace("INDENT", str(INDENT))
