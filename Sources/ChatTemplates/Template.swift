/// A parsed chat template, ready to render.
///
/// Parsing and rendering follow the Jinja environment transformers renders chat templates
/// in (`trim_blocks`, `lstrip_blocks`, the loopcontrols extension, `raise_exception`,
/// `namespace`, `strftime_now`, and its own `tojson`), so that
/// `try Template(source).render(context)` equals
/// `tokenizer.apply_chat_template(..., tokenize=False)` for the same variables.
///
///     let template = try Template(source)
///     let prompt = try template.render(["messages": messages, "add_generation_prompt": true])
public struct Template: Sendable {
    public let source: String
    private let statements: [Statement]

    /// Parses `source`; throws `TemplateError` (`.syntax` or `.unsupported`) with the line
    /// and column of the problem.
    public init(_ source: String) throws(TemplateError) {
        self.source = source
        statements = try Parser.parse(source)
    }

    /// Renders with `context` as the template's variables (missing ones are Jinja's
    /// `Undefined`). Throws `TemplateError`: `.raised` for the template's own
    /// `raise_exception`, other kinds for what Jinja would refuse at render time.
    public func render(_ context: [String: Value]) throws(TemplateError) -> String {
        try Evaluator(context: context).render(statements)
    }
}
