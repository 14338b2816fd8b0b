//! Alert label/annotation templates: the Go text/template subset, rendered as Prometheus 2.42 does.

use std::collections::BTreeMap;
use std::fmt;
use std::iter::Peekable;
use std::str::{CharIndices, Chars};

/// A parsed template: text interleaved with `{{ ... }}` pipelines.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// Why a template was rejected at parse time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

type Result<T> = std::result::Result<T, TemplateError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(TemplateError {
        message: message.into(),
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Command>),
}

/// One pipeline stage; a later stage receives the previous result as its last argument.
#[derive(Clone, Debug, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
    Printf(Vec<Piece>, Vec<Operand>),
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Value,
    Label(String),
    Literal(Val),
    /// An argument text/template rejects when executed, with Go's message.
    Fail(String),
    Sub(Vec<Command>),
}

/// The Go dynamic types a value can have here: `string`, `float64` and (number literals) `int`.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Str(String),
    Float(f64),
    Int(i64),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Float(_) => "float64",
            Val::Int(_) => "int",
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Str(s) => f.write_str(s),
            Val::Float(v) => f.write_str(&format_go_float(*v)),
            Val::Int(i) => write!(f, "{i}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    ToUpper,
    ToLower,
    Title,
}

/// Prometheus and text/template functions we deliberately do not implement.
const UNSUPPORTED_FUNCS: &str = "query first label value strvalue args reReplaceAll safeHtml match \
    graphLink tableLink sortByLabel stripPort humanizeTimestamp pathPrefix externalURL parseDuration \
    and or not call html index slice js len print println urlquery eq ne lt le gt ge";
const KEYWORDS: &str = "if else end range with define template block break continue nil true false";

const FUNCS: [(&str, Func); 7] = [
    ("humanize", Func::Humanize),
    ("humanize1024", Func::Humanize1024),
    ("humanizePercentage", Func::HumanizePercentage),
    ("humanizeDuration", Func::HumanizeDuration),
    ("toUpper", Func::ToUpper),
    ("toLower", Func::ToLower),
    ("title", Func::Title),
];

fn lookup_func(name: &str) -> Result<Func> {
    if let Some(&(_, func)) = FUNCS.iter().find(|(n, _)| *n == name) {
        return Ok(func);
    }
    if KEYWORDS.split(' ').any(|k| k == name) {
        return err(format!("`{name}` is not supported"));
    }
    if UNSUPPORTED_FUNCS.split_whitespace().any(|f| f == name) {
        return err(format!("unsupported function `{name}`"));
    }
    err(format!("function `{name}` not defined"))
}

impl Func {
    fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }
}

/// The whitespace Go's trim markers remove (and that separates tokens inside actions).
const GO_SPACE: [char; 4] = [' ', '\t', '\r', '\n'];

impl Template {
    /// Parses; unsupported constructs are errors naming the construct (e.g. "unsupported function `query`", "`range` is not supported").
    pub fn parse(text: &str) -> std::result::Result<Template, TemplateError> {
        let mut nodes = Vec::new();
        let (mut pos, mut trim_next) = (0, false);
        loop {
            let rest = &text[pos..];
            let open = rest.find("{{");
            let mut lit = &rest[..open.unwrap_or(rest.len())];
            if trim_next {
                lit = lit.trim_start_matches(GO_SPACE);
            }
            let Some(open) = open else {
                push_text(&mut nodes, lit);
                return Ok(Template { nodes });
            };
            let mut body = pos + open + 2;
            // Go only treats "{{-" as a trim marker when whitespace follows; "{{-3}}" is the number -3.
            let trim_left = text[body..].starts_with('-') && text[body + 1..].starts_with(GO_SPACE);
            if trim_left {
                lit = lit.trim_end_matches(GO_SPACE);
                body += 1;
            }
            push_text(&mut nodes, lit);
            let (node, end, trim_right) = parse_action(text, body)?;
            nodes.push(node);
            (pos, trim_next) = (end, trim_right);
        }
    }

    /// Renders with the alert's labels and value. Never panics. Runtime problems (e.g. printf %d with a string) render like Go's fmt does (e.g. "%!d(string=x)").
    pub fn render(&self, labels: &BTreeMap<String, String>, value: f64) -> String {
        let ctx = Ctx { labels, value };
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(pipeline) => match ctx.pipeline(pipeline) {
                    Ok(val) => out.push_str(&val.to_string()),
                    // Prometheus drops the partial output and shows only the error.
                    Err(e) => return format!("<error expanding template: {e}>"),
                },
            }
        }
        out
    }
}

fn push_text(nodes: &mut Vec<Node>, text: &str) {
    if !text.is_empty() {
        nodes.push(Node::Text(text.to_string()));
    }
}

/// Parses the action starting at `start` (after `{{` or `{{-`); returns it, where the text
/// resumes and whether that text must be left-trimmed.
fn parse_action(text: &str, start: usize) -> Result<(Node, usize, bool)> {
    let mut parser = Parser {
        lex: Lexer {
            src: text,
            pos: start,
            spaced: false,
        },
        peeked: None,
        spaced: false,
        depth: 0,
        trim_right: false,
    };
    let pipeline = parser.pipeline(false)?;
    Ok((Node::Action(pipeline), parser.lex.pos, parser.trim_right))
}

#[derive(Debug, PartialEq)]
enum Tok {
    Pipe,
    Open,
    Close,
    End { trim: bool },
    Str(String),
    Num(Val, String),
    Var(String, Vec<String>),
    Field(Vec<String>),
    Ident(String),
}

fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Whether whitespace preceded the last token (Go needs it between arguments).
    spaced: bool,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn take_while(&mut self, mut keep: impl FnMut(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn next_token(&mut self) -> Result<Tok> {
        self.spaced = !self.take_while(|c| GO_SPACE.contains(&c)).is_empty();
        let spaced = self.spaced;
        let rest = self.rest();
        // " -}}" is a right trim marker only when whitespace precedes the dash.
        if spaced && rest.starts_with("-}}") {
            self.pos += 3;
            return Ok(Tok::End { trim: true });
        }
        if rest.starts_with("}}") {
            self.pos += 2;
            return Ok(Tok::End { trim: false });
        }
        let Some(c) = rest.chars().next() else {
            return err("unclosed action");
        };
        let simple = match c {
            '|' => Tok::Pipe,
            '(' => Tok::Open,
            ')' => Tok::Close,
            _ => return self.complex_token(c, rest),
        };
        self.pos += 1;
        Ok(simple)
    }

    fn complex_token(&mut self, c: char, rest: &str) -> Result<Tok> {
        let word = match c {
            '"' => return self.quoted(),
            '`' => {
                let Some(len) = rest[1..].find('`') else {
                    return err("unterminated raw quoted string");
                };
                self.pos += len + 2;
                // Go drops carriage returns from raw strings.
                return Ok(Tok::Str(rest[1..=len].replace('\r', "")));
            }
            '$' => {
                self.pos += 1;
                let name = format!("${}", self.take_while(is_word));
                let fields = self.fields();
                if self
                    .rest()
                    .trim_start_matches(GO_SPACE)
                    .starts_with([':', '='])
                {
                    return err("variable declarations are not supported");
                }
                Tok::Var(name, fields)
            }
            '.' if !rest[1..].starts_with(|c: char| c.is_ascii_digit()) => match self.fields() {
                fields if fields.is_empty() => return err("`.` alone is not supported"),
                fields => Tok::Field(fields),
            },
            '.' | '+' | '-' | '0'..='9' => {
                let mut prev = ' ';
                let text = self.take_while(|c| {
                    let sign_ok = matches!(c, '+' | '-') && matches!(prev, ' ' | 'e' | 'E');
                    prev = c;
                    sign_ok || c == '.' || is_word(c)
                });
                return number_literal(text).map(|v| Tok::Num(v, text.to_string()));
            }
            c if c == '_' || c.is_alphabetic() => Tok::Ident(self.take_while(is_word).to_string()),
            ':' | '=' => return err("variable declarations are not supported"),
            '/' if rest.starts_with("/*") => return err("template comments are not supported"),
            '\'' => return err("character constants are not supported"),
            c => {
                return err(format!(
                    "unrecognized character in action: U+{:04X}",
                    u32::from(c)
                ));
            }
        };
        Ok(word)
    }

    /// A `.a.b` chain directly attached to the previous token (`.5` is a number in Go).
    fn fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while self.rest().starts_with('.')
            && self.rest()[1..].starts_with(|c: char| is_word(c) && !c.is_ascii_digit())
        {
            self.pos += 1;
            fields.push(self.take_while(is_word).to_string());
        }
        fields
    }

    /// A double-quoted literal with Go's escapes (strconv.Unquote).
    fn quoted(&mut self) -> Result<Tok> {
        let mut chars = self.rest()[1..].char_indices();
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 2;
                    return Ok(Tok::Str(out));
                }
                '\n' => break,
                '\\' => out.push(unescape(&mut chars)?),
                c => out.push(c),
            }
        }
        err("unterminated quoted string")
    }
}

/// The escapes of strconv.Unquote that alert templates use; numeric ones are rejected.
fn unescape(chars: &mut CharIndices<'_>) -> Result<char> {
    Ok(match chars.next().map(|(_, c)| c) {
        Some('a') => '\x07',
        Some('b') => '\x08',
        Some('f') => '\x0c',
        Some('n') => '\n',
        Some('r') => '\r',
        Some('t') => '\t',
        Some('v') => '\x0b',
        Some(c @ ('\\' | '"')) => c,
        Some(c) => return err(format!("unsupported escape `\\{c}` in string literal")),
        None => return err("unterminated quoted string"),
    })
}

/// Go number syntax reduced to decimal: ints (no octal leading zero) and floats.
fn number_literal(text: &str) -> Result<Val> {
    let unsupported = || TemplateError {
        message: format!("unsupported number literal `{text}`"),
    };
    let plain = without_digit_underscores(text).ok_or_else(unsupported)?;
    let unsigned = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // Go reads "010" as octal; keep to plain decimal.
        if unsigned.len() > 1 && unsigned.starts_with('0') {
            return Err(unsupported());
        }
        return plain.parse().map(Val::Int).map_err(|_| unsupported());
    }
    let decimal = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    match plain.parse::<f64>() {
        Ok(v) if decimal && v.is_finite() => Ok(Val::Float(v)),
        _ => Err(unsupported()),
    }
}

/// Go number syntax allows `_` between digits ("1_000"); `None` if one is elsewhere.
fn without_digit_underscores(s: &str) -> Option<String> {
    let digit_at = |i: Option<usize>| {
        i.and_then(|i| s.as_bytes().get(i))
            .is_some_and(u8::is_ascii_digit)
    };
    let ok = s
        .match_indices('_')
        .all(|(i, _)| digit_at(i.checked_sub(1)) && digit_at(Some(i + 1)));
    ok.then(|| s.replace('_', ""))
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<(Tok, bool)>,
    /// Whether whitespace preceded the token `next` returned last.
    spaced: bool,
    /// Open parentheses, bounded so that hostile input cannot exhaust the stack.
    depth: usize,
    trim_right: bool,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Tok> {
        let (tok, spaced) = match self.peeked.take() {
            Some(peeked) => peeked,
            None => (self.lex.next_token()?, self.lex.spaced),
        };
        self.spaced = spaced;
        Ok(tok)
    }

    fn at_command_end(&mut self) -> Result<bool> {
        let tok = self.next()?;
        let end = matches!(tok, Tok::Pipe | Tok::Close | Tok::End { .. });
        self.peeked = Some((tok, self.spaced));
        Ok(end)
    }

    fn pipeline(&mut self, nested: bool) -> Result<Vec<Command>> {
        let mut cmds = Vec::new();
        loop {
            cmds.push(self.command(cmds.len())?);
            let mut tok = self.next()?;
            if tok == Tok::Pipe {
                // Go 1.19's parser (Prometheus 2.42's) ignores a `|` right before `}}` or `)`.
                if !self.at_command_end()? {
                    continue;
                }
                tok = self.next()?;
            }
            match tok {
                Tok::Close if nested => return Ok(cmds),
                Tok::End { trim } if !nested => {
                    self.trim_right = trim;
                    return Ok(cmds);
                }
                Tok::End { .. } => return err("unclosed left paren"),
                _ => return err("unexpected `|` or `)` in action"),
            }
        }
    }

    fn command(&mut self, stage: usize) -> Result<Command> {
        let first = self.next()?;
        if matches!(first, Tok::Pipe | Tok::Close | Tok::End { .. }) {
            return err("missing value for command");
        }
        let Tok::Ident(name) = first else {
            if stage > 0 {
                return err(format!(
                    "non executable command in pipeline stage {}",
                    stage + 1
                ));
            }
            let operand = self.operand(first)?;
            if !self.at_command_end()? {
                return err("can't give argument to non-function");
            }
            return Ok(Command::Operand(operand));
        };
        // Name the unsupported keyword or function before complaining about its arguments.
        let func = if name == "printf" {
            None
        } else {
            Some(lookup_func(&name)?)
        };
        let mut args = Vec::new();
        while !self.at_command_end()? {
            let tok = self.next()?;
            if !self.spaced {
                return err("arguments must be separated by spaces");
            }
            let wants_string = matches!(func, Some(Func::ToUpper | Func::ToLower | Func::Title));
            args.push(match tok {
                Tok::Num(_, text) if wants_string => {
                    Operand::Fail(format!("expected string; found {text}"))
                }
                tok => self.operand(tok)?,
            });
        }
        call_command(func, args, stage > 0)
    }

    fn operand(&mut self, tok: Tok) -> Result<Operand> {
        match tok {
            Tok::Str(s) => Ok(Operand::Literal(Val::Str(s))),
            Tok::Num(v, _) => Ok(Operand::Literal(v)),
            Tok::Open if self.depth >= 100 => err("parentheses are nested too deeply"),
            Tok::Open => {
                self.depth += 1;
                let pipeline = self.pipeline(true)?;
                self.depth -= 1;
                Ok(Operand::Sub(pipeline))
            }
            Tok::Var(name, fields) => variable(&name, &fields),
            Tok::Field(fields) => data_field(&fields),
            Tok::Ident(name) => {
                if name != "printf" {
                    lookup_func(&name)?;
                }
                err(format!(
                    "put `{name}` and its arguments in parentheses to use it as an argument"
                ))
            }
            Tok::Pipe | Tok::Close | Tok::End { .. } => err("missing value for command"),
        }
    }
}

/// Builds a call of `func`, or of printf when `None`.
fn call_command(func: Option<Func>, mut args: Vec<Operand>, piped: bool) -> Result<Command> {
    let Some(func) = func else {
        if args.is_empty() {
            return err("printf needs a string literal format as its first argument");
        }
        let Operand::Literal(Val::Str(format)) = args.remove(0) else {
            return err("printf format must be a string literal");
        };
        return Ok(Command::Printf(parse_format(&format)?, args));
    };
    let given = args.len() + usize::from(piped);
    if given != 1 {
        return err(format!(
            "wrong number of args for {}: want 1 got {given}",
            func.name()
        ));
    }
    Ok(Command::Call(func, args))
}

/// Prometheus binds `$labels`, `$value` (and `$externalLabels`, `$externalURL`) before the text.
fn variable(name: &str, fields: &[String]) -> Result<Operand> {
    match (name, fields) {
        ("$value", []) => Ok(Operand::Value),
        ("$value", _) => err("`$value` has no fields"),
        ("$labels", _) => label(fields, "$labels"),
        ("$", _) => data_field(fields),
        ("$externalLabels" | "$externalURL", _) => err(format!("`{name}` is not supported")),
        _ => err(format!("undefined variable `{name}`")),
    }
}

/// Fields of the alert data: `.Value` and `.Labels.NAME`.
fn data_field(fields: &[String]) -> Result<Operand> {
    match fields.split_first() {
        Some((f, [])) if f == "Value" => Ok(Operand::Value),
        Some((f, rest)) if f == "Labels" => label(rest, ".Labels"),
        Some((f, _)) if f == "ExternalLabels" || f == "ExternalURL" => {
            err(format!("`.{f}` is not supported"))
        }
        Some((f, _)) if f == "Value" => err("`.Value` has no fields"),
        Some((f, _)) => err(format!("unknown field `.{f}`")),
        None => err("`$` alone is not supported"),
    }
}

fn label(fields: &[String], what: &str) -> Result<Operand> {
    match fields {
        [name] => Ok(Operand::Label(name.clone())),
        [] => err(format!(
            "`{what}` alone is not supported; use `{what}.NAME`"
        )),
        _ => err(format!("`{what}.{}` is not supported", fields.join("."))),
    }
}

struct Ctx<'a> {
    labels: &'a BTreeMap<String, String>,
    value: f64,
}

impl Ctx<'_> {
    fn pipeline(&self, cmds: &[Command]) -> std::result::Result<Val, String> {
        let mut piped = None;
        for cmd in cmds {
            piped = Some(self.command(cmd, piped)?);
        }
        piped.ok_or_else(|| "empty pipeline".to_string())
    }

    fn command(&self, cmd: &Command, piped: Option<Val>) -> std::result::Result<Val, String> {
        let args = |ops: &[Operand]| -> std::result::Result<Vec<Val>, String> {
            let mut vals = ops
                .iter()
                .map(|op| self.operand(op))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            vals.extend(piped.clone());
            Ok(vals)
        };
        match cmd {
            Command::Operand(op) => self.operand(op),
            Command::Call(func, ops) => call(*func, args(ops)?),
            Command::Printf(pieces, ops) => Ok(Val::Str(sprintf(pieces, &args(ops)?))),
        }
    }

    fn operand(&self, op: &Operand) -> std::result::Result<Val, String> {
        Ok(match op {
            Operand::Value => Val::Float(self.value),
            // Prometheus uses missingkey=zero: a missing label is "" (the zero string).
            Operand::Label(name) => Val::Str(self.labels.get(name).cloned().unwrap_or_default()),
            Operand::Literal(val) => val.clone(),
            Operand::Sub(cmds) => self.pipeline(cmds)?,
            Operand::Fail(message) => return Err(message.clone()),
        })
    }
}

fn call(func: Func, args: Vec<Val>) -> std::result::Result<Val, String> {
    let [arg] = <[Val; 1]>::try_from(args).map_err(|a| {
        format!(
            "wrong number of args for {}: want 1 got {}",
            func.name(),
            a.len()
        )
    })?;
    let text = match (func, arg) {
        (Func::ToUpper, Val::Str(s)) => s.chars().map(simple_upper).collect(),
        (Func::ToLower, Val::Str(s)) => s.chars().map(simple_lower).collect(),
        (Func::Title, Val::Str(s)) => go_title(&s),
        (Func::ToUpper | Func::ToLower | Func::Title, other) => {
            return Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            ));
        }
        (numeric, arg) => {
            let v = to_float(&arg).map_err(|e| format!("error calling {}: {e}", func.name()))?;
            match numeric {
                Func::Humanize => humanize(v),
                Func::Humanize1024 => humanize1024(v),
                Func::HumanizePercentage => format!("{}%", g4(v * 100.0)),
                _ => humanize_duration(v), // the string functions matched above
            }
        }
    };
    Ok(Val::Str(text))
}

/// Prometheus' convertToFloat: numbers pass through, strings go through strconv.ParseFloat.
fn to_float(val: &Val) -> std::result::Result<f64, String> {
    let s = match val {
        Val::Float(v) => return Ok(*v),
        Val::Int(i) => return Ok(*i as f64),
        Val::Str(s) => s,
    };
    let failure = |why: &str| format!("strconv.ParseFloat: parsing {s:?}: {why}");
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = body.to_ascii_lowercase();
    // Go accepts signed "inf"/"infinity" but only an unsigned "nan".
    if word == "nan" && body.len() == s.len() {
        return Ok(f64::NAN);
    }
    if word == "inf" || word == "infinity" {
        return Ok(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // Hexadecimal floats ("0x1p4"), which Go also accepts, are not supported here.
    let plain = without_digit_underscores(s)
        .filter(|_| body.starts_with(|c: char| c.is_ascii_digit() || c == '.'));
    let Some(plain) = plain else {
        return Err(failure("invalid syntax"));
    };
    match plain.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(failure("value out of range")),
        Ok(v) => Ok(v),
        Err(_) => Err(failure("invalid syntax")),
    }
}

const BIG: [&str; 8] = ["k", "M", "G", "T", "P", "E", "Z", "Y"];
const SMALL: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];
const BINARY: [&str; 8] = ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];

/// Divides by `base` per prefix until |v| < base, as Prometheus' loops do.
fn scale_down(mut v: f64, base: f64, prefixes: &[&'static str]) -> (f64, &'static str) {
    let mut prefix = "";
    for p in prefixes {
        if v.abs() < base {
            break;
        }
        (prefix, v) = (p, v / base);
    }
    (v, prefix)
}

/// Multiplies by 1000 per prefix until |v| >= 1.
fn scale_up(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in SMALL {
        if v.abs() >= 1.0 {
            break;
        }
        (prefix, v) = (p, v * 1000.0);
    }
    (v, prefix)
}

/// Go's `fmt.Sprintf("%.4g", v)`, which every humanize function uses.
fn g4(v: f64) -> String {
    strconv_format(v, 'g', Some(4))
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let (v, prefix) = if v.abs() >= 1.0 {
        scale_down(v, 1000.0, &BIG)
    } else {
        scale_up(v)
    };
    format!("{}{prefix}", g4(v))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let (v, prefix) = scale_down(v, 1024.0, &BINARY);
    format!("{}{prefix}", g4(v))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() < 1.0 {
        let (v, prefix) = scale_up(v);
        return format!("{}{prefix}s", g4(v));
    }
    let sign = if v < 0.0 { "-" } else { "" };
    // Go's int64(v) gives MinInt64 on amd64 (Prometheus' usual platform) when v is out of range.
    let secs = if v.abs() < 9_223_372_036_854_775_808.0 {
        v.abs() as i64
    } else {
        i64::MIN
    };
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sign}{}s", g4(v.abs())),
        (0, 0, _) => format!("{sign}{m}m {s}s"),
        (0, _, _) => format!("{sign}{h}h {m}m {s}s"),
        _ => format!("{sign}{d}d {h}h {m}m {s}s"),
    }
}

/// Go's unicode.ToUpper uses simple case mappings: one rune in, one out (ß stays ß).
fn simple_upper(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next(), u32::from(c)) {
        (Some(u), None, _) => u,
        // Greek letters with ypogegrammeni simply map to their titlecase forms (ᾳ → ᾼ).
        (_, _, 0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7) => shift(c, 8),
        (_, _, 0x1FB3 | 0x1FC3 | 0x1FF3) => shift(c, 9),
        _ => c,
    }
}

fn shift(c: char, by: u32) -> char {
    char::from_u32(u32::from(c) + by).unwrap_or(c)
}

/// unicode.ToTitle: ToUpper except for the Latin digraphs and Georgian Mkhedruli (unchanged).
fn title_case(c: char) -> char {
    match c {
        'Ǆ'..='ǆ' => 'ǅ',
        'Ǉ'..='ǉ' => 'ǈ',
        'Ǌ'..='ǌ' => 'ǋ',
        'Ǳ'..='ǳ' => 'ǲ',
        '\u{10D0}'..='\u{10FA}' | '\u{10FD}'..='\u{10FF}' => c,
        _ => simple_upper(c),
    }
}

/// Only U+0130 lowercases to several runes; its simple mapping is the first ('i').
fn simple_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// strings.Title: title-case each rune that follows a separator.
fn go_title(s: &str) -> String {
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let out = if is_separator(prev) { title_case(c) } else { c };
            prev = c;
            out
        })
        .collect()
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    !(c.is_alphabetic() || c.is_numeric()) && c.is_whitespace()
}

/// Go's fmt %v of a float64.
pub fn format_go_float(v: f64) -> String {
    strconv_format(v, 'g', None)
}

/// Decimal digits of |v| as Go's decimalSlice: value = 0.DIGITS × 10^point, trailing zeros trimmed.
struct Digits {
    digits: Vec<u8>,
    point: i32,
}

impl Digits {
    /// Reads Rust's `{:e}` output; its correctly rounded (ties-to-even) digits are the digits
    /// Go's Ryu and bigFtoa produce.
    fn from_sci(sci: &str) -> Digits {
        let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
        let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        let point = if digits.is_empty() {
            0
        } else {
            exp.parse::<i32>().unwrap_or(0) + 1
        };
        Digits { digits, point }
    }

    fn shortest(v: f64) -> Digits {
        let rust = format!("{:e}", v.abs());
        let len = rust
            .split('e')
            .next()
            .map_or(1, |m| m.bytes().filter(u8::is_ascii_digit).count());
        // Rust breaks a tie in the last digit upwards; Go's Ryu takes the correctly rounded
        // (ties-to-even) digits of the same length whenever those still read back as v.
        let even = format!("{:.*e}", len.saturating_sub(1), v.abs());
        Digits::from_sci(if even.parse() == Ok(v.abs()) {
            &even
        } else {
            &rust
        })
    }

    fn rounded(v: f64, significant: usize) -> Digits {
        Digits::from_sci(&format!("{:.*e}", significant.saturating_sub(1), v.abs()))
    }

    fn len(&self) -> i32 {
        i32::try_from(self.digits.len()).unwrap_or(i32::MAX)
    }

    fn at(&self, i: i32) -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.digits.get(i))
            .map_or('0', |&d| char::from(d))
    }
}

/// strconv.FormatFloat(v, verb, prec, 64) for 'e', 'f' and 'g'; `None` is Go's -1 (shortest).
fn strconv_format(v: f64, verb: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    let body = match (verb, prec) {
        ('f', p) => format!("{:.*}", p.unwrap_or(6), v.abs()),
        ('e', p) => {
            let p = p.unwrap_or(6);
            fmt_e(&Digits::rounded(v, p + 1), p as i32)
        }
        (_, None) => {
            let d = Digits::shortest(v);
            fmt_g(&d, d.len(), true)
        }
        (_, Some(p)) => fmt_g(&Digits::rounded(v, p.max(1)), p.max(1) as i32, false),
    };
    format!("{sign}{body}")
}

/// strconv's %g choice: %e when the exponent is < -4 or >= the precision (6 when shortest).
fn fmt_g(d: &Digits, mut prec: i32, shortest: bool) -> String {
    let mut eprec = prec;
    if eprec > d.len() && d.len() >= d.point {
        eprec = d.len();
    }
    if shortest {
        eprec = 6;
    }
    let exp = d.point - 1;
    if exp < -4 || exp >= eprec {
        return fmt_e(d, prec.min(d.len()) - 1);
    }
    if prec > d.point {
        prec = d.len();
    }
    fmt_f(d, (prec - d.point).max(0))
}

/// -d.dddde±dd, with at least two exponent digits.
fn fmt_e(d: &Digits, prec: i32) -> String {
    let mut s = String::from(d.at(0));
    if prec > 0 {
        s.push('.');
        s.extend((1..=prec).map(|i| d.at(i)));
    }
    let exp = if d.digits.is_empty() { 0 } else { d.point - 1 };
    s + &format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn fmt_f(d: &Digits, prec: i32) -> String {
    let mut s: String = if d.point > 0 {
        (0..d.point).map(|i| d.at(i)).collect()
    } else {
        "0".into()
    };
    if prec > 0 {
        s.push('.');
        s.extend((0..prec).map(|i| d.at(d.point + i)));
    }
    s
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
    verb: char,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Verb(Spec),
}

/// Parses a printf format. Unsupported: flags ' ' and '#', `*`, `[n]`, verbs other than v s d e f g.
fn parse_format(format: &str) -> Result<Vec<Piece>> {
    let (mut pieces, mut text) = (Vec::new(), String::new());
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' | '#' => return err(format!("printf flag `{flag}` is not supported")),
                _ => break,
            }
            chars.next();
        }
        spec.zero &= !spec.minus; // Go pads with zeros only on the left.
        spec.width = format_number(&mut chars)?;
        if chars.next_if_eq(&'.').is_some() {
            spec.prec = Some(format_number(&mut chars)?.unwrap_or(0));
        }
        match chars.next() {
            None => text.push_str("%!(NOVERB)"),
            Some('%') => text.push('%'),
            Some(verb @ ('v' | 's' | 'd' | 'e' | 'f' | 'g')) => {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(Piece::Verb(Spec { verb, ..spec }));
            }
            Some('*' | '[') => {
                return err("printf `*` widths and `[n]` argument indexes are not supported");
            }
            Some(verb) => return err(format!("unsupported printf verb `%{verb}`")),
        }
    }
    pieces.push(Piece::Text(text));
    pieces.retain(|p| p != &Piece::Text(String::new()));
    Ok(pieces)
}

fn format_number(chars: &mut Peekable<Chars<'_>>) -> Result<Option<usize>> {
    let mut n = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        let v = n.unwrap_or(0) * 10 + d as usize;
        if v > 1000 {
            return err("printf width or precision above 1000 is not supported");
        }
        n = Some(v);
    }
    Ok(n)
}

/// fmt.Sprintf, including Go's in-band complaints (%!d(string=x), MISSING, EXTRA).
fn sprintf(pieces: &[Piece], args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Verb(spec) => {
                match args.get(next) {
                    Some(arg) => out.push_str(&fmt_arg(arg, spec)),
                    None => out.push_str(&format!("%!{}(MISSING)", spec.verb)),
                }
                next += 1;
            }
        }
    }
    if let Some(extra) = args.get(next..).filter(|extra| !extra.is_empty()) {
        let listed: Vec<String> = extra
            .iter()
            .map(|a| format!("{}={a}", a.type_name()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", listed.join(", ")));
    }
    out
}

fn fmt_arg(arg: &Val, spec: &Spec) -> String {
    match (spec.verb, arg) {
        // Go turns %+v's plus into "struct field names", which plain values ignore.
        ('v', _) => fmt_v(
            arg,
            &Spec {
                plus: false,
                ..*spec
            },
        ),
        ('s', Val::Str(s)) => fmt_str(s, spec),
        ('d', Val::Int(i)) => fmt_int(*i, spec),
        ('e' | 'f' | 'g', Val::Float(v)) => fmt_float(*v, spec.verb, spec),
        // Go's badVerb prints the value with %v but keeps the width and flags.
        _ => format!("%!{}({}={})", spec.verb, arg.type_name(), fmt_v(arg, spec)),
    }
}

fn fmt_v(arg: &Val, spec: &Spec) -> String {
    match arg {
        Val::Str(s) => fmt_str(s, spec),
        Val::Int(i) => fmt_int(*i, spec),
        Val::Float(v) => fmt_float(*v, 'g', spec),
    }
}

fn fmt_str(s: &str, spec: &Spec) -> String {
    let truncated: String = s.chars().take(spec.prec.unwrap_or(usize::MAX)).collect();
    pad(&truncated, spec, if spec.zero { '0' } else { ' ' })
}

fn fmt_int(i: i64, spec: &Spec) -> String {
    let sign = if i < 0 {
        "-"
    } else if spec.plus {
        "+"
    } else {
        ""
    };
    let digits = i.unsigned_abs().to_string();
    match spec.prec {
        // Go: precision 0 and value 0 print nothing but padding.
        Some(0) if i == 0 => pad("", spec, ' '),
        // An explicit precision is a minimum digit count and disables zero padding.
        Some(p) => pad(&format!("{sign}{digits:0>p$}"), spec, ' '),
        None => pad_number(sign, &digits, spec),
    }
}

fn fmt_float(v: f64, verb: char, spec: &Spec) -> String {
    let prec = spec.prec.or(if verb == 'g' { None } else { Some(6) });
    let num = strconv_format(v, verb, prec);
    // Go never zero-pads Inf/NaN and shows NaN's sign only when '+' asks for it.
    if v.is_nan() {
        return pad(if spec.plus { "+NaN" } else { "NaN" }, spec, ' ');
    }
    if v.is_infinite() {
        return pad(&num, spec, ' ');
    }
    match num.strip_prefix('-') {
        Some(digits) => pad_number("-", digits, spec),
        None => pad_number(if spec.plus { "+" } else { "" }, &num, spec),
    }
}

/// Zero padding goes between the sign and the digits.
fn pad_number(sign: &str, digits: &str, spec: &Spec) -> String {
    if spec.zero {
        let inner = Spec {
            width: spec.width.map(|w| w.saturating_sub(sign.len())),
            ..*spec
        };
        return format!("{sign}{}", pad(digits, &inner, '0'));
    }
    pad(&format!("{sign}{digits}"), spec, ' ')
}

/// Go pads to a width counted in runes; right padding is always spaces.
fn pad(s: &str, spec: &Spec, fill: char) -> String {
    let missing = spec.width.unwrap_or(0).saturating_sub(s.chars().count());
    if spec.minus {
        format!("{s}{}", " ".repeat(missing))
    } else {
        format!("{}{s}", fill.to_string().repeat(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [
            ("job", "api"),
            ("num", "1234567"),
            ("bad", "one"),
            ("name", "aa bb CC"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn render(text: &str, value: f64) -> String {
        match Template::parse(text) {
            Ok(t) => t.render(&labels(), value),
            Err(e) => format!("parse error: {e}"),
        }
    }

    #[test]
    fn default_float_format_is_go_percent_v() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (15.0, "15"),
            (0.85, "0.85"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.1 + 0.2, "0.30000000000000004"),
            // 17 digits tie here: Go keeps the even last digit where Rust's `{:e}` rounds up.
            (1381216492790571.2, "1.3812164927905712e+15"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(format_go_float(v), want, "{v:e}");
        }
    }

    #[test]
    fn percent_4g_matches_go() {
        let cases = [
            (12345.0, "1.234e+04"), // an exact tie rounds half to even, as Go's Ryu does
            (12346.0, "1.235e+04"),
            (1e6, "1e+06"),
            (1000.0, "1000"),
            (100.0, "100"),
            (1.5, "1.5"),
            (0.000123456, "0.0001235"),
            (1e-5, "1e-05"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
        ];
        for (v, want) in cases {
            assert_eq!(g4(v), want, "{v:e}");
        }
    }

    /// Expected values are Prometheus' own template_test.go cases plus the brief's examples.
    #[test]
    fn humanize_functions_match_prometheus() {
        let cases = [
            ("humanize", 0.0, "0"),
            ("humanize", 1.0, "1"),
            ("humanize", -1.0, "-1"),
            ("humanize", 1234567.0, "1.235M"),
            ("humanize", 0.12, "120m"),
            ("humanize", 0.00012, "120u"),
            ("humanize", 9.223372036854776e18, "9.223E"),
            ("humanize", 1e30, "1e+06Y"),
            ("humanize", f64::NEG_INFINITY, "-Inf"),
            ("humanize1024", 1048576.0, "1Mi"),
            ("humanize1024", 0.12, "0.12"),
            ("humanize1024", 1234567.0, "1.177Mi"),
            ("humanize1024", 9.223372036854776e18, "8Ei"),
            ("humanize1024", f64::NAN, "NaN"),
            ("humanizePercentage", 0.8523, "85.23%"),
            ("humanizePercentage", -0.22222, "-22.22%"),
            ("humanizePercentage", 0.0, "0%"),
            ("humanizePercentage", 1.23456, "123.5%"),
            ("humanizePercentage", 1234567.0, "1.235e+08%"),
            ("humanizeDuration", 0.0, "0s"),
            ("humanizeDuration", 1.0, "1s"),
            ("humanizeDuration", 60.0, "1m 0s"),
            ("humanizeDuration", 3600.0, "1h 0m 0s"),
            ("humanizeDuration", 3661.0, "1h 1m 1s"),
            ("humanizeDuration", 90000.0, "1d 1h 0m 0s"),
            ("humanizeDuration", -183845.0, "-2d 3h 4m 5s"),
            ("humanizeDuration", 899.99, "14m 59s"),
            ("humanizeDuration", 0.25, "250ms"),
            ("humanizeDuration", 0.0001, "100us"),
            ("humanizeDuration", 0.12345, "123.5ms"),
            ("humanizeDuration", 1.2345, "1.234s"),
            ("humanizeDuration", 12.345, "12.35s"),
            ("humanizeDuration", f64::INFINITY, "+Inf"),
            // Out of int64 range: Go on amd64 converts to MinInt64.
            ("humanizeDuration", 1e20, "-106751991167300d -15h -30m -8s"),
        ];
        for (func, v, want) in cases {
            assert_eq!(
                render(&format!("{{{{ $value | {func} }}}}"), v),
                want,
                "{func}({v})"
            );
            assert_eq!(
                render(&format!("{{{{ {func} .Value }}}}"), v),
                want,
                "{func}({v})"
            );
        }
    }

    #[test]
    fn operands_literals_and_string_functions() {
        let cases = [
            (
                "{{ $labels.job }}/{{ .Labels.job }}/{{ $.Labels.job }}",
                "api/api/api",
            ),
            ("[{{ $labels.missing }}]", "[]"),
            ("{{ $value }} {{ .Value }}", "0.85 0.85"),
            ("{{ 1 }}{{ 1.0 }}{{ 1e3 }}{{ -0 }}{{ .5 }}", "11100000.5"),
            (
                "{{ 1_000 }} {{ -1_0.5 }} {{ \"1_000\" | humanize }}",
                "1000 -10.5 1k",
            ),
            ("{{ $value | }}{{ (1 |) }}", "0.851"),
            ("{{ \"a\\tb\\\"c\\\\\" }}", "a\tb\"c\\"),
            ("{{ `raw\\n` }}", "raw\\n"),
            ("{{ \"}}\" }}", "}}"),
            ("{{ $labels.num | humanize }}", "1.235M"),
            ("{{ \".12\" | humanize }}", "120m"),
            ("{{ humanize 1234567 }}", "1.235M"),
            ("{{ $labels.name | title }}", "Aa Bb CC"),
            (
                "{{ title \"hello_world foo-bar 9lives\" }}",
                "Hello_world Foo-Bar 9lives",
            ),
            ("{{ $labels.name | toUpper }}", "AA BB CC"),
            ("{{ toLower \"ÀB İ Σ\" }}", "àb i σ"),
            ("{{ toUpper \"é ß\" }}", "É ß"),
            ("{{ $value | humanize | toUpper }}", "850M"),
            ("{{ printf \"%s!\" (humanizePercentage $value) }}", "85%!"),
            (
                &format!("{{{{ {}$value{} }}}}", "(".repeat(99), ")".repeat(99)),
                "0.85",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(render(text, 0.85), want, "{text}");
        }
    }

    #[test]
    fn trim_markers_follow_go() {
        let cases = [
            ("a  \n{{- 1 -}}\t\n b", "a1b"),
            ("a {{-3}} b", "a -3 b"),
            ("a {{- 3}} b", "a3 b"),
            ("a {{3 -}} b", "a 3b"),
            ("a {{ 3 }}{{- \" \" -}} b", "a 3 b"),
            ("plain }} text", "plain }} text"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(render(text, 0.0), want, "{text:?}");
        }
    }

    #[test]
    fn printf_matches_go_fmt() {
        let cases = [
            ("{{ printf \"%.2f\" $value }}", "1.23"),
            ("{{ printf \"%0.2f\" 3720.01 }}", "3720.01"),
            ("{{ printf \"%5.1f|\" 2.25 }}", "  2.2|"),
            ("{{ printf \"%.0f %.0f\" 2.5 3.5 }}", "2 4"),
            ("{{ printf \"%f\" $value }}", "1.234560"),
            (
                "{{ printf \"%e|%.3e\" 1234.5678 1234.5 }}",
                "1.234568e+03|1.234e+03",
            ),
            ("{{ printf \"%012.3e\" -1234.5 }}", "-001.234e+03"),
            (
                "{{ printf \"%g %g %g\" 0.00001234 100000.0 1e6 }}",
                "1.234e-05 100000 1e+06",
            ),
            ("{{ printf \"%v %v %v\" $value 3 \"s\" }}", "1.23456 3 s"),
            (
                "{{ printf \"%d|%5d|%-5d|%05d|%+d\" 42 42 42 -42 5 }}",
                "42|   42|42   |-0042|+5",
            ),
            ("{{ printf \"%.3d|%.0d|\" 7 0 }}", "007||"),
            ("{{ printf \"%+.1f %+v\" 1.0 1.5 }}", "+1.0 1.5"),
            (
                "{{ printf \"%s|%6s|%-4s|%.2s\" \"ab\" \"ab\" \"ab\" \"abc\" }}",
                "ab|    ab|ab  |ab",
            ),
            ("{{ printf \"%d\" $value }}", "%!d(float64=1.23456)"),
            ("{{ printf \"%d %s\" \"x\" 1 }}", "%!d(string=x) %!s(int=1)"),
            ("{{ printf \"%f\" 3 }}", "%!f(int=3)"),
            ("{{ printf \"%5d\" \"x\" }}", "%!d(string=    x)"),
            ("{{ printf \"%d %d\" 1 }}", "1 %!d(MISSING)"),
            (
                "{{ printf \"%d\" 1 2 \"a\" }}",
                "1%!(EXTRA int=2, string=a)",
            ),
            ("{{ printf \"100%% of 100%\" }}", "100% of 100%!(NOVERB)"),
            ("{{ $value | printf \"%.1f\" }}", "1.2"),
            ("{{ printf \"%s\" $labels.job | toUpper }}", "API"),
        ];
        for (text, want) in cases {
            let got = render(text, 1.23456);
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn printf_pads_special_floats_with_spaces() {
        let pieces = parse_format("%6.2f|%06.2f|%+f|%-5v|").unwrap();
        let args = [f64::NAN, f64::INFINITY, f64::NAN, f64::NEG_INFINITY].map(Val::Float);
        assert_eq!(sprintf(&pieces, &args), "   NaN|  +Inf|+NaN|-Inf |");
    }

    #[test]
    fn runtime_errors_render_like_prometheus() {
        let cases = [
            (
                "x {{ humanize \"one\" }}",
                "error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
            (
                "{{ $labels.bad | humanizeDuration }}",
                "error calling humanizeDuration: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
            (
                "{{ \"1e400\" | humanize1024 }}",
                "error calling humanize1024: strconv.ParseFloat: parsing \"1e400\": value out of range",
            ),
            (
                "{{ \"+nan\" | humanize }}",
                "parsing \"+nan\": invalid syntax",
            ),
            (
                "{{ $value | toUpper }}",
                "wrong type for value; expected string; got float64",
            ),
        ];
        for (text, want) in cases {
            let got = render(text, 1.0);
            assert!(
                got.starts_with("<error expanding template: ") && got.contains(want),
                "{text}: {got}"
            );
        }
        assert_eq!(
            render("{{ \"-Inf\" | humanize }} {{ \"NaN\" | humanize }}", 0.0),
            "-Inf NaN"
        );
    }

    #[test]
    fn unsupported_constructs_are_parse_errors() {
        let cases = [
            ("{{ query \"up\" }}", "unsupported function `query`"),
            ("{{ range . }}x{{ end }}", "`range` is not supported"),
            ("{{ if true }}", "`if` is not supported"),
            ("{{ $labels }}", "`$labels` alone is not supported"),
            ("{{ .Labels }}", "`.Labels` alone is not supported"),
            ("{{ $labels.a.b }}", "`$labels.a.b` is not supported"),
            (
                "{{ $externalLabels.env }}",
                "`$externalLabels` is not supported",
            ),
            ("{{ .ExternalURL }}", "`.ExternalURL` is not supported"),
            ("{{ .Foo }}", "unknown field `.Foo`"),
            ("{{ $x }}", "undefined variable `$x`"),
            ("{{ $x := 1 }}", "variable declarations are not supported"),
            ("{{ nope 1 }}", "function `nope` not defined"),
            ("{{ printf \"%x\" 1 }}", "unsupported printf verb `%x`"),
            ("{{ printf \"% d\" 1 }}", "printf flag ` ` is not supported"),
            (
                "{{ printf $labels.job }}",
                "printf format must be a string literal",
            ),
            (
                "{{ humanize 1 2 }}",
                "wrong number of args for humanize: want 1 got 2",
            ),
            (
                "{{ 1 | humanize 2 }}",
                "wrong number of args for humanize: want 1 got 2",
            ),
            ("{{ 1 | 2 }}", "non executable command in pipeline stage 2"),
            ("{{ 1 2 }}", "can't give argument to non-function"),
            ("{{ humanize toUpper }}", "in parentheses"),
            (
                "{{ toUpper\"x\" }}",
                "arguments must be separated by spaces",
            ),
            ("{{ humanize(1) }}", "arguments must be separated by spaces"),
            ("{{", "unclosed action"),
            ("{{ 1 ", "unclosed action"),
            ("{{}}", "missing value for command"),
            ("{{ (1 }}", "unclosed left paren"),
            (
                &format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000)),
                "nested too deeply",
            ),
            ("{{ 1) }}", "unexpected `|` or `)`"),
            ("{{ 1 | | humanize }}", "unexpected `|` or `)` in action"),
            ("{{ 1_ }}", "unsupported number literal `1_`"),
            ("{{ \"abc }}", "unterminated quoted string"),
            ("{{ \"\\x41\" }}", "unsupported escape `\\x`"),
            ("{{ 0x10 }}", "unsupported number literal `0x10`"),
            ("{{ 010 }}", "unsupported number literal `010`"),
            ("{{ 99999999999999999999 }}", "unsupported number literal"),
            ("{{ . }}", "`.` alone is not supported"),
            ("{{/* note */}}", "template comments are not supported"),
            ("{{ 'a' }}", "character constants are not supported"),
            ("{{ 1 \u{a0}}}", "unrecognized character in action: U+00A0"),
        ];
        for (text, want) in cases {
            let got = Template::parse(text).map(|_| ()).unwrap_err().message;
            assert!(got.contains(want), "{text}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn random_fragments_never_panic() {
        const FRAGMENTS: [&str; 40] = [
            "{{",
            "}}",
            "{{- ",
            " -}}",
            "$value",
            "$labels.job",
            ".Value",
            ".Labels.x",
            " | ",
            "humanize ",
            "printf ",
            "\"%5.2f\"",
            "\"%d %s %\"",
            "(",
            ")",
            "1",
            "-2.5e3",
            ".5",
            "\"a\\n\"",
            "`raw`",
            "toUpper",
            "title ",
            "humanizeDuration ",
            "%",
            "é",
            "\\",
            "\"",
            "-",
            " ",
            "x",
            "$",
            ".",
            "0",
            "\t\n",
            "humanize1024",
            "\"%-08.3e|%+v\"",
            "$.",
            "{{-",
            "'",
            "ü}}",
        ];
        let values = [0.0, -1.5, f64::NAN, f64::INFINITY, 1e300, 5e-324, -1e-300];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let mut parsed = 0;
        for i in 0..600 {
            let text: String = (0..1 + next(12))
                .map(|_| FRAGMENTS[next(FRAGMENTS.len())])
                .collect();
            if let Ok(template) = Template::parse(&text) {
                parsed += 1;
                let _ = template.render(&labels(), values[i % values.len()]);
            }
        }
        assert!(parsed > 50, "only {parsed} random templates parsed");
    }
}
