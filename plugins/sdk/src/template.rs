//! Username templates in Vault's syntax.
//!
//! Vault renders `username_template` with Go's `text/template` and the function set of
//! `sdk/helper/template/funcs.go`. This module implements the subset of that language the
//! Vault templates in the wild use, with a tiny hand-written lexer and parser:
//!
//! ```text
//! template := (TEXT | action)*
//! action   := "{{" ["- "] (pipeline | "/*" comment "*/") [" -"] "}}"
//! pipeline := command ("|" command)*          the piped value becomes the LAST argument
//! command  := FUNCTION operand* | operand
//! operand  := .DisplayName | .RoleName | "string" | `raw` | INTEGER | FUNCTION | "(" pipeline ")"
//! ```
//!
//! Every expression has a type known at parse time (fields and all functions yield strings,
//! only literals are integers), so unknown names, wrong arities and type mismatches are all
//! reported by [`UsernameTemplate::parse`].

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use rand::RngExt as _;
use rand::distr::Alphanumeric;
use sha2::{Digest as _, Sha256};

use crate::UsernameMetadata;

/// Deepest allowed nesting of parentheses, and longest allowed pipeline. Both bound the
/// recursion of parsing and rendering so a hostile template cannot overflow the stack.
const MAX_NESTING: usize = 32;

/// Longest string `random` may produce. Vault has no limit, but no username needs more and
/// a template such as `random 9999999999` must not be able to exhaust memory.
const MAX_RANDOM_LEN: i64 = 1024;

/// Longest string any function may produce, in bytes. No username comes near it, but
/// without a bound a short template such as twelve chained `replace "" "aaaaaaaa"` would
/// grow its value ninefold per step and exhaust memory while the config is validated.
const MAX_VALUE_LEN: usize = 64 * 1024;

/// Whitespace as Go's template lexer defines it (trim markers strip exactly these).
const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];

/// Go template keywords: reported as unsupported rather than as unknown functions.
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    "nil", "true", "false",
];

/// A parsed username template.
#[derive(Debug, Clone)]
pub struct UsernameTemplate {
    source: String,
    nodes: Vec<Node>,
}

/// Why a template could not be parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is not well-formed.
    #[error("template syntax error at byte {offset}: {message}")]
    Syntax {
        /// Byte offset in the template source where the problem was found.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A function name that is not part of Vault's template function set.
    #[error("unknown function \"{name}\"")]
    UnknownFunction {
        /// The name as written.
        name: String,
    },
    /// A field other than `.DisplayName` or `.RoleName`.
    #[error("unknown field \".{name}\": only .DisplayName and .RoleName are available")]
    UnknownField {
        /// The field path as written, without the leading dot.
        name: String,
    },
    /// A function was called with too few or too many arguments.
    #[error("{function}: wrong number of arguments (got {got}); usage: {usage}")]
    ArgumentCount {
        /// The function called.
        function: &'static str,
        /// How many arguments it received, including a piped value.
        got: usize,
        /// How the function is meant to be called.
        usage: &'static str,
    },
    /// A function argument has the wrong type.
    #[error("{function}: argument {position} must be {expected}, got {found}")]
    ArgumentType {
        /// The function called.
        function: &'static str,
        /// One-based argument position, counting a piped value as the last argument.
        position: usize,
        /// The type the function needs.
        expected: &'static str,
        /// The type it was given.
        found: &'static str,
    },
    /// A function argument has the right type but an unusable value.
    #[error("{function}: {message}")]
    InvalidArgument {
        /// The function called.
        function: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// Parentheses or pipelines nest deeper than the parser allows.
    #[error("template nests deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
}

impl UsernameTemplate {
    /// Parses and validates a template.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut nodes = Vec::new();
        for segment in Lexer::new(source).segments()? {
            match segment {
                Segment::Text(text) => nodes.push(Node::Text(text)),
                Segment::Action { tokens, end } => {
                    nodes.push(Node::Action(Parser::new(&tokens, end).parse_action()?));
                }
                Segment::Comment => {}
            }
        }
        let template = Self {
            source: source.to_owned(),
            nodes,
        };
        // Vault validates a template by rendering it once with empty metadata, so value errors
        // such as `truncate 0` fail the config write rather than the first credential request.
        template.render(&UsernameMetadata {
            display_name: String::new(),
            role_name: String::new(),
        })?;
        Ok(template)
    }

    /// Renders the template for one credential request.
    pub fn render(&self, meta: &UsernameMetadata) -> Result<String, TemplateError> {
        self.render_at(meta, Utc::now())
    }

    /// The template text this was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with a fixed clock; all time functions in one rendering see the same instant.
    fn render_at(
        &self,
        meta: &UsernameMetadata,
        now: DateTime<Utc>,
    ) -> Result<String, TemplateError> {
        let ctx = Context { meta, now };
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(expr) => match ctx.eval(expr)? {
                    Value::Str(s) => out.push_str(&s),
                    Value::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                },
            }
        }
        Ok(out)
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Expr),
}

/// A type-checked expression.
#[derive(Debug, Clone)]
enum Expr {
    Field(Field),
    Str(String),
    Int(i64),
    Call { func: Func, args: Vec<Expr> },
}

impl Expr {
    /// Builds a call after checking its arity and argument types.
    fn call(func: Func, args: Vec<Expr>) -> Result<Self, TemplateError> {
        let arity_error = || TemplateError::ArgumentCount {
            function: func.name(),
            got: args.len(),
            usage: func.usage(),
        };
        let expected: &[Ty] = match func.params() {
            Params::Fixed(types) if types.len() == args.len() => types,
            Params::Fixed(_) => return Err(arity_error()),
            Params::Printf => match args.first() {
                Some(_) => &[Ty::Str],
                None => return Err(arity_error()),
            },
        };
        for (position, (arg, want)) in args.iter().zip(expected).enumerate() {
            if arg.ty() != *want {
                return Err(TemplateError::ArgumentType {
                    function: func.name(),
                    position: position + 1,
                    expected: want.describe(),
                    found: arg.ty().describe(),
                });
            }
        }
        Ok(Self::Call { func, args })
    }

    fn ty(&self) -> Ty {
        match self {
            Self::Int(_) => Ty::Int,
            Self::Field(_) | Self::Str(_) | Self::Call { .. } => Ty::Str,
        }
    }
}

/// The metadata fields a template may read.
#[derive(Debug, Clone, Copy)]
enum Field {
    DisplayName,
    RoleName,
}

/// Static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Int => "an integer",
        }
    }
}

/// A runtime value.
#[derive(Debug)]
enum Value {
    Str(String),
    Int(i64),
}

/// Parameter list of a function.
enum Params {
    Fixed(&'static [Ty]),
    /// A format string followed by any number of values of either type.
    Printf,
}

/// The template functions: Go's `printf` plus Vault's `funcs.go`.
#[derive(Debug, Clone, Copy)]
enum Func {
    Printf,
    Random,
    Truncate,
    TruncateSha256,
    Uppercase,
    Lowercase,
    Replace,
    Sha256,
    Base64,
    UnixTime,
    UnixTimeMillis,
    Timestamp,
    Uuid,
}

impl Func {
    const ALL: [Self; 13] = [
        Self::Printf,
        Self::Random,
        Self::Truncate,
        Self::TruncateSha256,
        Self::Uppercase,
        Self::Lowercase,
        Self::Replace,
        Self::Sha256,
        Self::Base64,
        Self::UnixTime,
        Self::UnixTimeMillis,
        Self::Timestamp,
        Self::Uuid,
    ];

    fn lookup(name: &str) -> Result<Self, TemplateError> {
        Self::ALL
            .into_iter()
            .find(|func| func.name() == name)
            .ok_or_else(|| TemplateError::UnknownFunction {
                name: name.to_owned(),
            })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Printf => "printf",
            Self::Random => "random",
            Self::Truncate => "truncate",
            Self::TruncateSha256 => "truncate_sha256",
            Self::Uppercase => "uppercase",
            Self::Lowercase => "lowercase",
            Self::Replace => "replace",
            Self::Sha256 => "sha256",
            Self::Base64 => "base64",
            Self::UnixTime => "unix_time",
            Self::UnixTimeMillis => "unix_time_millis",
            Self::Timestamp => "timestamp",
            Self::Uuid => "uuid",
        }
    }

    fn params(self) -> Params {
        use Ty::{Int, Str};
        Params::Fixed(match self {
            Self::Printf => return Params::Printf,
            Self::Random => &[Int],
            Self::Truncate | Self::TruncateSha256 => &[Int, Str],
            Self::Uppercase | Self::Lowercase | Self::Sha256 | Self::Base64 | Self::Timestamp => {
                &[Str]
            }
            Self::Replace => &[Str, Str, Str],
            Self::UnixTime | Self::UnixTimeMillis | Self::Uuid => &[],
        })
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Printf => "printf FORMAT [VALUE...]",
            Self::Random => "random N",
            Self::Truncate => "truncate N STRING, or STRING | truncate N",
            Self::TruncateSha256 => "truncate_sha256 N STRING, or STRING | truncate_sha256 N",
            Self::Uppercase => "uppercase STRING, or STRING | uppercase",
            Self::Lowercase => "lowercase STRING, or STRING | lowercase",
            Self::Replace => {
                "replace FIND REPLACEMENT STRING, or STRING | replace FIND REPLACEMENT"
            }
            Self::Sha256 => "sha256 STRING, or STRING | sha256",
            Self::Base64 => "base64 STRING, or STRING | base64",
            Self::UnixTime => "unix_time",
            Self::UnixTimeMillis => "unix_time_millis",
            Self::Timestamp => "timestamp LAYOUT",
            Self::Uuid => "uuid",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

/// A token inside an action.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `.Name` (possibly a chain such as `.A.B`), without the leading dot.
    Field(String),
    Ident(String),
    Str(String),
    Int(i64),
    Pipe,
    LParen,
    RParen,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Self::Field(name) => format!("field .{name}"),
            Self::Ident(name) => format!("\"{name}\""),
            Self::Str(_) => "string literal".to_owned(),
            Self::Int(n) => format!("number {n}"),
            Self::Pipe => "\"|\"".to_owned(),
            Self::LParen => "\"(\"".to_owned(),
            Self::RParen => "\")\"".to_owned(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    offset: usize,
}

/// The template split into literal text and actions.
enum Segment {
    Text(String),
    /// The tokens of one action, and the offset of its closing delimiter.
    Action {
        tokens: Vec<Spanned>,
        end: usize,
    },
    Comment,
}

fn syntax(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        offset,
        message: message.into(),
    }
}

fn is_space(c: char) -> bool {
    SPACE_CHARS.contains(&c)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Splits the whole template into text, action and comment segments.
    fn segments(mut self) -> Result<Vec<Segment>, TemplateError> {
        let mut segments = Vec::new();
        let mut trim_leading = false;
        loop {
            let open = self.rest().find("{{").map(|i| self.pos + i);
            let mut text = &self.src[self.pos..open.unwrap_or(self.src.len())];
            if trim_leading {
                text = text.trim_start_matches(SPACE_CHARS);
            }
            let Some(open) = open else {
                push_text(&mut segments, text);
                return Ok(segments);
            };
            self.pos = open + 2;
            // `{{- ` trims the preceding text; `{{-3}}` is the number -3, as in Go.
            let mut after = self.rest().chars();
            if after.next() == Some('-') && after.next().is_some_and(is_space) {
                text = text.trim_end_matches(SPACE_CHARS);
                self.pos += 2;
            }
            push_text(&mut segments, text);
            let (segment, trim_right) = if self.rest().starts_with("/*") {
                (self.comment(open)?, self.close_delim(open)?)
            } else {
                self.action(open)?
            };
            segments.push(segment);
            trim_leading = trim_right;
        }
    }

    /// Consumes a comment; Go requires it to fill the whole action.
    fn comment(&mut self, open: usize) -> Result<Segment, TemplateError> {
        let Some(len) = self.rest()[2..].find("*/") else {
            return Err(syntax(open, "unclosed comment"));
        };
        self.pos += 2 + len + 2;
        Ok(Segment::Comment)
    }

    /// Consumes `}}` or ` -}}` right after a comment, reporting whether it carried a trim marker.
    fn close_delim(&mut self, open: usize) -> Result<bool, TemplateError> {
        if let Some((len, trim)) = self.at_close_delim() {
            self.pos += len;
            return Ok(trim);
        }
        if self.rest().contains("}}") {
            Err(syntax(self.pos, "comment ends before closing delimiter"))
        } else {
            Err(syntax(open, "unclosed action"))
        }
    }

    /// If the input continues with a closing delimiter, its length and whether it trims.
    fn at_close_delim(&self) -> Option<(usize, bool)> {
        let rest = self.rest();
        if rest.starts_with("}}") {
            return Some((2, false));
        }
        let trimmed = rest.trim_start_matches(SPACE_CHARS);
        (trimmed.len() < rest.len() && trimmed.starts_with("-}}"))
            .then(|| (rest.len() - trimmed.len() + 3, true))
    }

    /// Lexes the tokens of one action up to and including its closing delimiter.
    fn action(&mut self, open: usize) -> Result<(Segment, bool), TemplateError> {
        let mut tokens = Vec::new();
        loop {
            if let Some((len, trim)) = self.at_close_delim() {
                let end = self.pos;
                self.pos += len;
                return Ok((Segment::Action { tokens, end }, trim));
            }
            let offset = self.pos;
            let Some(c) = self.peek() else {
                return Err(syntax(open, "unclosed action"));
            };
            let token = match c {
                c if is_space(c) => {
                    self.bump();
                    continue;
                }
                '|' | '(' | ')' => {
                    self.bump();
                    match c {
                        '|' => Token::Pipe,
                        '(' => Token::LParen,
                        _ => Token::RParen,
                    }
                }
                '"' => Token::Str(self.quoted()?),
                '`' => Token::Str(self.raw()?),
                '.' => Token::Field(self.field()?),
                '$' => return Err(syntax(offset, "variables are not supported")),
                '0'..='9' => Token::Int(self.number()?),
                '-' | '+' if self.rest()[1..].starts_with(|d: char| d.is_ascii_digit()) => {
                    Token::Int(self.number()?)
                }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let name = self.take_while(is_ident_char);
                    if KEYWORDS.contains(&name) {
                        return Err(syntax(
                            offset,
                            format!("\"{name}\" is not supported in username templates"),
                        ));
                    }
                    Token::Ident(name.to_owned())
                }
                c => return Err(syntax(offset, format!("unexpected {c:?} in action"))),
            };
            tokens.push(Spanned { token, offset });
        }
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
        &self.src[start..self.pos]
    }

    /// Lexes `.Name`, keeping chains like `.A.B` whole so the parser can reject them by name.
    fn field(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while self.peek() == Some('.') {
            self.bump();
            if self.take_while(is_ident_char).is_empty() {
                return Err(syntax(
                    start,
                    "the bare dot (.) is not supported; use .DisplayName or .RoleName",
                ));
            }
        }
        Ok(self.src[start + 1..self.pos].to_owned())
    }

    /// Lexes a decimal integer with an optional sign.
    fn number(&mut self) -> Result<i64, TemplateError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        let digits = self.take_while(|c| c.is_ascii_digit());
        if self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
            self.take_while(|c| is_ident_char(c) || c == '.');
            return Err(syntax(
                start,
                format!(
                    "bad number \"{}\": only decimal integers are supported",
                    &self.src[start..self.pos]
                ),
            ));
        }
        // Go reads a leading zero as octal; refusing it avoids silently different lengths.
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(syntax(
                start,
                "numbers with a leading zero are not supported",
            ));
        }
        self.src[start..self.pos]
            .parse()
            .map_err(|_| syntax(start, "number out of range"))
    }

    /// Lexes a backtick raw string: no escapes, may span lines.
    fn raw(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        self.bump();
        let Some(len) = self.rest().find('`') else {
            return Err(syntax(start, "unterminated raw quoted string"));
        };
        let text = self.rest()[..len].to_owned();
        self.pos += len + 1;
        Ok(text)
    }

    /// Lexes a double-quoted string with Go's escape sequences.
    fn quoted(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let offset = self.pos;
            match self.bump() {
                None | Some('\n') => return Err(syntax(start, "unterminated quoted string")),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(offset)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// Decodes the escape after a backslash at `offset`.
    fn escape(&mut self, offset: usize) -> Result<char, TemplateError> {
        let bad = |what: &str| syntax(offset, format!("invalid escape sequence in string: {what}"));
        let simple = match self.bump() {
            Some('a') => '\u{07}',
            Some('b') => '\u{08}',
            Some('f') => '\u{0C}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('v') => '\u{0B}',
            Some('\\') => '\\',
            Some('"') => '"',
            Some(kind @ ('x' | 'u' | 'U')) => {
                let width = match kind {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits = self.rest().get(..width).unwrap_or("");
                let code = u32::from_str_radix(digits, 16)
                    .ok()
                    .filter(|_| digits.len() == width && !digits.starts_with('+'))
                    .ok_or_else(|| bad(&format!("\\{kind} needs {width} hex digits")))?;
                self.pos += width;
                // `\xHH` is a raw byte in Go; only ASCII bytes are valid UTF-8 on their own.
                if kind == 'x' && code > 0x7F {
                    return Err(bad("\\x escapes above \\x7f are not valid UTF-8"));
                }
                return char::from_u32(code).ok_or_else(|| bad("not a Unicode scalar value"));
            }
            Some(d @ '0'..='7') => {
                let digits = format!("{d}{}", self.rest().get(..2).unwrap_or(""));
                let code = u32::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|code| digits.len() == 3 && *code <= 0x7F)
                    .ok_or_else(|| bad("octal escapes need 3 digits and must be ASCII"))?;
                self.pos += 2;
                return char::from_u32(code).ok_or_else(|| bad("not a Unicode scalar value"));
            }
            Some(c) => return Err(bad(&format!("\\{c}"))),
            None => return Err(syntax(offset, "unterminated quoted string")),
        };
        Ok(simple)
    }
}

fn push_text(segments: &mut Vec<Segment>, text: &str) {
    if !text.is_empty() {
        segments.push(Segment::Text(text.to_owned()));
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Recursive-descent parser over the tokens of one action.
struct Parser<'a> {
    tokens: &'a [Spanned],
    pos: usize,
    /// Offset of the action's closing delimiter, for errors at the end of input.
    end: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(tokens: &'a [Spanned], end: usize) -> Self {
        Self {
            tokens,
            pos: 0,
            end,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<&'a Spanned> {
        self.tokens.get(self.pos)
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn parse_action(mut self) -> Result<Expr, TemplateError> {
        let expr = self.pipeline()?;
        match self.peek() {
            None => Ok(expr),
            Some(t) => Err(syntax(
                t.offset,
                format!("unexpected {}", t.token.describe()),
            )),
        }
    }

    fn pipeline(&mut self) -> Result<Expr, TemplateError> {
        let mut expr = self.command(None)?;
        let mut stages = 1;
        while self.peek().is_some_and(|t| t.token == Token::Pipe) {
            self.pos += 1;
            stages += 1;
            if stages > MAX_NESTING {
                return Err(TemplateError::TooDeep { limit: MAX_NESTING });
            }
            expr = self.command(Some(expr))?;
        }
        Ok(expr)
    }

    /// Parses one pipeline stage; `piped` is the previous stage's value.
    fn command(&mut self, piped: Option<Expr>) -> Result<Expr, TemplateError> {
        let offset = self.offset();
        if let Some(Spanned {
            token: Token::Ident(name),
            ..
        }) = self.peek()
        {
            self.pos += 1;
            let func = Func::lookup(name)?;
            let mut args = Vec::new();
            while let Some(arg) = self.operand()? {
                args.push(arg);
            }
            args.extend(piped);
            return Expr::call(func, args);
        }
        if piped.is_some() {
            return Err(syntax(
                offset,
                "a pipeline stage after \"|\" must be a function call",
            ));
        }
        let Some(expr) = self.operand()? else {
            return Err(syntax(offset, "missing value for command"));
        };
        if self
            .peek()
            .is_some_and(|t| !matches!(t.token, Token::Pipe | Token::RParen))
        {
            return Err(syntax(
                self.offset(),
                "cannot give arguments to a non-function",
            ));
        }
        Ok(expr)
    }

    /// Parses one operand, or returns `None` at `|`, `)` or the end of the action.
    fn operand(&mut self) -> Result<Option<Expr>, TemplateError> {
        let Some(Spanned { token, offset }) = self.peek() else {
            return Ok(None);
        };
        let expr = match token {
            Token::Pipe | Token::RParen => return Ok(None),
            Token::Field(name) => Expr::Field(match name.as_str() {
                "DisplayName" => Field::DisplayName,
                "RoleName" => Field::RoleName,
                _ => return Err(TemplateError::UnknownField { name: name.clone() }),
            }),
            Token::Str(s) => Expr::Str(s.clone()),
            Token::Int(n) => Expr::Int(*n),
            // A function name in argument position is a call with no arguments, as in Go.
            Token::Ident(name) => Expr::call(Func::lookup(name)?, Vec::new())?,
            Token::LParen => {
                self.pos += 1;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(TemplateError::TooDeep { limit: MAX_NESTING });
                }
                let inner = self.pipeline()?;
                if !self.peek().is_some_and(|t| t.token == Token::RParen) {
                    return Err(syntax(*offset, "unclosed left parenthesis"));
                }
                self.depth -= 1;
                inner
            }
        };
        self.pos += 1;
        Ok(Some(expr))
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// Everything one rendering reads.
struct Context<'a> {
    meta: &'a UsernameMetadata,
    now: DateTime<Utc>,
}

impl Context<'_> {
    fn eval(&self, expr: &Expr) -> Result<Value, TemplateError> {
        Ok(match expr {
            Expr::Field(Field::DisplayName) => Value::Str(self.meta.display_name.clone()),
            Expr::Field(Field::RoleName) => Value::Str(self.meta.role_name.clone()),
            Expr::Str(s) => Value::Str(s.clone()),
            Expr::Int(n) => Value::Int(*n),
            Expr::Call { func, args } => {
                let values = args
                    .iter()
                    .map(|arg| self.eval(arg))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Str(self.apply(*func, values)?)
            }
        })
    }

    fn apply(&self, func: Func, args: Vec<Value>) -> Result<String, TemplateError> {
        let args = Args { func, values: args };
        let out = match func {
            Func::Printf => printf(&args.values)?,
            Func::Random => random(args.int(0)?)?,
            Func::Truncate => truncate(args.int(0)?, args.str(1)?)?,
            Func::TruncateSha256 => truncate_sha256(args.int(0)?, args.str(1)?)?,
            Func::Uppercase => map_runes(args.str(0)?, char::to_uppercase),
            Func::Lowercase => map_runes(args.str(0)?, char::to_lowercase),
            Func::Replace => replace(args.str(2)?, args.str(0)?, args.str(1)?)?,
            Func::Sha256 => hex::encode(Sha256::digest(args.str(0)?)),
            Func::Base64 => base64::engine::general_purpose::STANDARD.encode(args.str(0)?),
            Func::UnixTime => self.now.timestamp().to_string(),
            Func::UnixTimeMillis => self.now.timestamp_millis().to_string(),
            Func::Timestamp => format_go_time(args.str(0)?, self.now),
            Func::Uuid => uuid::Uuid::new_v4().to_string(),
        };
        if out.len() > MAX_VALUE_LEN {
            return Err(too_long(func.name()));
        }
        Ok(out)
    }
}

/// Evaluated arguments, with typed accessors. Parsing already checked the types, so the
/// accessors' errors only guard against a checker bug instead of panicking.
struct Args {
    func: Func,
    values: Vec<Value>,
}

impl Args {
    fn mismatch(&self, index: usize, expected: Ty) -> TemplateError {
        TemplateError::ArgumentType {
            function: self.func.name(),
            position: index + 1,
            expected: expected.describe(),
            found: match self.values.get(index) {
                Some(Value::Int(_)) => Ty::Int.describe(),
                Some(Value::Str(_)) => Ty::Str.describe(),
                None => "nothing",
            },
        }
    }

    fn int(&self, index: usize) -> Result<i64, TemplateError> {
        match self.values.get(index) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err(self.mismatch(index, Ty::Int)),
        }
    }

    fn str(&self, index: usize) -> Result<&str, TemplateError> {
        match self.values.get(index) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(self.mismatch(index, Ty::Str)),
        }
    }
}

/// Changes case rune by rune like Go's `strings.ToUpper`/`ToLower`: a rune whose full mapping
/// is several runes (`ß` → `SS`) stays as it is, so case changes never lengthen a name that
/// was already truncated to a database's limit.
fn map_runes<I: Iterator<Item = char> + ExactSizeIterator>(
    s: &str,
    map: impl Fn(char) -> I,
) -> String {
    s.chars()
        .map(|c| {
            let mut mapped = map(c);
            match (mapped.len(), mapped.next()) {
                (1, Some(single)) => single,
                _ => c,
            }
        })
        .collect()
}

fn invalid(function: &'static str, message: String) -> TemplateError {
    TemplateError::InvalidArgument { function, message }
}

fn too_long(function: &'static str) -> TemplateError {
    invalid(
        function,
        format!("the result would exceed {MAX_VALUE_LEN} bytes"),
    )
}

/// `replace old new s`, refused before it is built if the result would be too long (an empty
/// `old` matches before every character and at the end, as in Go).
fn replace(s: &str, old: &str, new: &str) -> Result<String, TemplateError> {
    let matches = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let len = (s.len() - matches * old.len()).saturating_add(matches.saturating_mul(new.len()));
    if len > MAX_VALUE_LEN {
        return Err(too_long("replace"));
    }
    Ok(s.replace(old, new))
}

/// Go's `fmt.Sprintf` for the verbs `%s`, `%d`, `%v` and `%%`. Where Go would print markers
/// such as `%!s(MISSING)` into the username, this reports an error instead.
fn printf(args: &[Value]) -> Result<String, TemplateError> {
    let err = |message: String| invalid("printf", message);
    let Some(Value::Str(format)) = args.first() else {
        return Err(err("the format must be a string".to_owned()));
    };
    let mut values = args[1..].iter();
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or_else(|| err("format ends with a lone %".to_owned()))?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let value = values
            .next()
            .ok_or_else(|| err(format!("missing argument for %{verb}")))?;
        match (verb, value) {
            ('s' | 'v', Value::Str(s)) => out.push_str(s),
            ('d' | 'v', Value::Int(n)) => {
                let _ = write!(out, "{n}");
            }
            ('s', Value::Int(_)) => return Err(err("%s needs a string, got an integer".into())),
            ('d', Value::Str(_)) => return Err(err("%d needs an integer, got a string".into())),
            _ => {
                return Err(err(format!(
                    "unsupported verb %{verb}: only %s, %d, %v and %% are supported"
                )));
            }
        }
    }
    match values.len() {
        0 => Ok(out),
        extra => Err(err(format!("{extra} argument(s) not used by the format"))),
    }
}

/// `random N`: N characters from `[A-Za-z0-9]`, like Vault's `base62.Random`.
fn random(len: i64) -> Result<String, TemplateError> {
    if !(0..=MAX_RANDOM_LEN).contains(&len) {
        return Err(invalid(
            "random",
            format!("length must be between 0 and {MAX_RANDOM_LEN}, got {len}"),
        ));
    }
    // `Alphanumeric` draws uniformly from exactly the 62 base62 characters.
    Ok(rand::rng()
        .sample_iter(Alphanumeric)
        .take(to_len(len))
        .map(char::from)
        .collect())
}

/// The longest prefix of `s` of at most `max` bytes. Go slices bytes and may split a UTF-8
/// sequence; a Rust string cannot hold half a character, so the cut moves back to a boundary.
fn byte_prefix(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Converts a positive length to `usize`, saturating where `usize` is narrower than `i64`.
fn to_len(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `truncate N s`: the first N bytes of `s`.
fn truncate(max: i64, s: &str) -> Result<String, TemplateError> {
    if max <= 0 {
        return Err(invalid(
            "truncate",
            format!("length must be > 0, got {max}"),
        ));
    }
    Ok(byte_prefix(s, to_len(max)).to_owned())
}

/// `truncate_sha256 N s`: if `s` is longer than N bytes, its first N-8 bytes followed by the
/// first 8 hex digits of the SHA-256 of the remainder, so distinct long names stay distinct.
fn truncate_sha256(max: i64, s: &str) -> Result<String, TemplateError> {
    const HASH_LEN: usize = 8;
    if max <= HASH_LEN as i64 {
        return Err(invalid(
            "truncate_sha256",
            format!("length must be > {HASH_LEN}, got {max}"),
        ));
    }
    let max = to_len(max);
    if s.len() <= max {
        return Ok(s.to_owned());
    }
    let head = byte_prefix(s, max - HASH_LEN);
    let hash = hex::encode(Sha256::digest(&s[head.len()..]));
    Ok(format!("{head}{}", &hash[..HASH_LEN]))
}

// ---------------------------------------------------------------------------------------------
// Go time layouts
// ---------------------------------------------------------------------------------------------

/// One element of a Go reference-time layout (`Mon Jan 2 15:04:05 MST 2006`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutToken {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm,
    LowerPm,
    ZoneName,
    /// A numeric offset such as `-07:00`; the text to print for UTC.
    NumericZone(&'static str),
    /// An ISO 8601 offset such as `Z07:00`, which prints `Z` for UTC.
    IsoZone,
    /// Fractional seconds: separator, digit count, and whether trailing zeros are trimmed.
    Fraction(char, usize, bool),
}

/// Recognises the layout token at the start of `s`, following Go's `nextStdChunk`.
fn layout_token(s: &str) -> Option<(LayoutToken, usize)> {
    use LayoutToken as T;
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let starts = |p: &str| s.starts_with(p);
    Some(match b.first()? {
        b'J' if starts("January") => (T::LongMonth, 7),
        b'J' if starts("Jan") && !at(3).is_some_and(|c| c.is_ascii_lowercase()) => (T::Month, 3),
        b'M' if starts("Monday") => (T::LongWeekDay, 6),
        b'M' if starts("Mon") && !at(3).is_some_and(|c| c.is_ascii_lowercase()) => (T::WeekDay, 3),
        b'M' if starts("MST") => (T::ZoneName, 3),
        b'0' => match at(1)? {
            b'1' => (T::ZeroMonth, 2),
            b'2' => (T::ZeroDay, 2),
            b'3' => (T::ZeroHour12, 2),
            b'4' => (T::ZeroMinute, 2),
            b'5' => (T::ZeroSecond, 2),
            b'6' => (T::Year, 2),
            b'0' if at(2) == Some(b'2') => (T::ZeroYearDay, 3),
            _ => return None,
        },
        b'1' if at(1) == Some(b'5') => (T::Hour, 2),
        b'1' => (T::NumMonth, 1),
        b'2' if starts("2006") => (T::LongYear, 4),
        b'2' => (T::Day, 1),
        // `_2006` is a literal underscore followed by the year.
        b'_' if starts("_2") && !starts("_2006") => (T::UnderDay, 2),
        b'_' if starts("__2") => (T::UnderYearDay, 3),
        b'3' => (T::Hour12, 1),
        b'4' => (T::Minute, 1),
        b'5' => (T::Second, 1),
        b'P' if starts("PM") => (T::Pm, 2),
        b'p' if starts("pm") => (T::LowerPm, 2),
        b'-' => ["-070000", "-07:00:00", "-0700", "-07:00", "-07"]
            .into_iter()
            .find(|p| starts(p))
            .map(|p| (T::NumericZone(zero_offset(p)), p.len()))?,
        b'Z' => ["Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07"]
            .into_iter()
            .find(|p| starts(p))
            .map(|p| (T::IsoZone, p.len()))?,
        sep @ (b'.' | b',') => {
            let digit = at(1).filter(|d| matches!(d, b'0' | b'9'))?;
            let run = b[1..].iter().take_while(|&&c| c == digit).count();
            // Only a run of one repeated digit not followed by another digit is a fraction.
            if at(1 + run).is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
            (T::Fraction(char::from(*sep), run, digit == b'9'), 1 + run)
        }
        _ => return None,
    })
}

/// What a numeric zone pattern prints for UTC (`-07:00` → `+00:00`).
fn zero_offset(pattern: &str) -> &'static str {
    match pattern {
        "-070000" => "+000000",
        "-07:00:00" => "+00:00:00",
        "-0700" => "+0000",
        "-07:00" => "+00:00",
        _ => "+00",
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` (always UTC) with a Go layout string such as `2006-01-02T15:04:05Z07:00`.
fn format_go_time(layout: &str, t: DateTime<Utc>) -> String {
    use LayoutToken as T;
    let mut out = String::new();
    let mut rest = layout;
    while let Some(c) = rest.chars().next() {
        let Some((token, len)) = layout_token(rest) else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        rest = &rest[len..];
        let month = MONTHS[t.month0() as usize];
        let weekday = WEEKDAYS[t.weekday().num_days_from_sunday() as usize];
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let _ = match token {
            T::LongMonth => write!(out, "{month}"),
            T::Month => write!(out, "{}", &month[..3]),
            T::NumMonth => write!(out, "{}", t.month()),
            T::ZeroMonth => write!(out, "{:02}", t.month()),
            T::LongWeekDay => write!(out, "{weekday}"),
            T::WeekDay => write!(out, "{}", &weekday[..3]),
            T::Day => write!(out, "{}", t.day()),
            T::UnderDay => write!(out, "{:>2}", t.day()),
            T::ZeroDay => write!(out, "{:02}", t.day()),
            T::UnderYearDay => write!(out, "{:>3}", t.ordinal()),
            T::ZeroYearDay => write!(out, "{:03}", t.ordinal()),
            T::Hour => write!(out, "{:02}", t.hour()),
            T::Hour12 => write!(out, "{hour12}"),
            T::ZeroHour12 => write!(out, "{hour12:02}"),
            T::Minute => write!(out, "{}", t.minute()),
            T::ZeroMinute => write!(out, "{:02}", t.minute()),
            T::Second => write!(out, "{}", t.second()),
            T::ZeroSecond => write!(out, "{:02}", t.second()),
            T::LongYear => write!(out, "{:04}", t.year()),
            T::Year => write!(out, "{:02}", t.year().rem_euclid(100)),
            T::Pm => write!(out, "{}", if t.hour() >= 12 { "PM" } else { "AM" }),
            T::LowerPm => write!(out, "{}", if t.hour() >= 12 { "pm" } else { "am" }),
            T::ZoneName => write!(out, "UTC"),
            T::NumericZone(zero) => write!(out, "{zero}"),
            T::IsoZone => write!(out, "Z"),
            T::Fraction(sep, digits, trim) => {
                // A leap second shows up in chrono as nanoseconds >= 1e9.
                let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                let mut frac = &nanos[..digits.min(9)];
                if trim {
                    frac = frac.trim_end_matches('0');
                }
                if frac.is_empty() && trim {
                    Ok(())
                } else {
                    write!(out, "{sep}{frac}")
                }
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    const PG_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#;
    const MYSQL_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 10) (.RoleName | truncate 10) (random 20) (unix_time) | truncate 32 }}"#;
    const LEGACY: &str =
        r#"{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}"#;

    fn meta(display: &str, role: &str) -> UsernameMetadata {
        UsernameMetadata {
            display_name: display.to_owned(),
            role_name: role.to_owned(),
        }
    }

    fn render(source: &str) -> String {
        UsernameTemplate::parse(source)
            .unwrap_or_else(|e| panic!("parse {source:?}: {e}"))
            .render(&meta("token", "my-role"))
            .unwrap_or_else(|e| panic!("render {source:?}: {e}"))
    }

    /// 2023-11-14T22:13:20.012340Z
    fn fixed_now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 12_340_000)
            .single()
            .unwrap()
    }

    fn render_fixed(source: &str) -> String {
        UsernameTemplate::parse(source)
            .unwrap()
            .render_at(&meta("token", "my-role"), fixed_now())
            .unwrap()
    }

    fn parse_err(source: &str) -> TemplateError {
        match UsernameTemplate::parse(source) {
            Ok(_) => panic!("{source:?} should not parse"),
            Err(e) => e,
        }
    }

    fn is_base62(s: &str) -> bool {
        s.chars().all(|c| c.is_ascii_alphanumeric())
    }

    #[test]
    fn template_and_error_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TemplateError>();
        assert_send_sync::<UsernameTemplate>();
    }

    #[test]
    fn empty_template_renders_empty() {
        assert_eq!(render(""), "");
    }

    #[test]
    fn literal_text_passes_through() {
        assert_eq!(render("plain user_name-1 }} {"), "plain user_name-1 }} {");
    }

    #[test]
    fn fields() {
        assert_eq!(render("{{.DisplayName}}/{{ .RoleName }}"), "token/my-role");
    }

    #[test]
    fn source_is_kept() {
        let t = UsernameTemplate::parse(PG_DEFAULT).unwrap();
        assert_eq!(t.source(), PG_DEFAULT);
        assert_eq!(t.clone().source(), PG_DEFAULT);
    }

    #[test]
    fn postgres_default_template() {
        let t = UsernameTemplate::parse(PG_DEFAULT).unwrap();
        let name = t.render_at(&meta("token", "my-role"), fixed_now()).unwrap();
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 6, "{name}");
        assert_eq!(&parts[..3], ["v", "token", "my"]);
        assert_eq!(parts[3], "role");
        assert_eq!(parts[4].len(), 20);
        assert!(is_base62(parts[4]));
        assert_eq!(parts[5], "1700000000");

        let long = t
            .render(&meta("kubernetes-ns-sa", "readonly-analytics"))
            .unwrap();
        assert!(long.starts_with("v-kubernet-readonly-"), "{long}");
        assert!(long.len() <= 63);
    }

    #[test]
    fn postgres_default_caps_at_63() {
        // Display and role are cut to 8, so the cap only bites if the text around grows.
        let t = UsernameTemplate::parse(
            r#"{{ printf "v-%s-%s-%s" .DisplayName (random 40) (unix_time) | truncate 63 }}"#,
        )
        .unwrap();
        assert_eq!(t.render(&meta(&"d".repeat(50), "r")).unwrap().len(), 63);
    }

    #[test]
    fn mysql_default_template() {
        let t = UsernameTemplate::parse(MYSQL_DEFAULT).unwrap();
        let name = t
            .render(&meta("approle-deployer", "readwrite-orders"))
            .unwrap();
        assert_eq!(name.len(), 32);
        // Both names are cut to 10 bytes; "readwrite-orders" keeps its dash.
        assert!(name.starts_with("v-approle-de-readwrite--"), "{name}");
        assert!(is_base62(&name[24..]));
    }

    #[test]
    fn legacy_template() {
        let t = UsernameTemplate::parse(LEGACY).unwrap();
        let name = t.render(&meta("token", "analytics")).unwrap();
        assert_eq!(name.len(), 16);
        assert!(name.starts_with("v-anal-"));
        assert!(is_base62(&name[7..]));
    }

    #[test]
    fn default_templates_render_with_empty_metadata() {
        for source in [PG_DEFAULT, MYSQL_DEFAULT, LEGACY] {
            let t = UsernameTemplate::parse(source).unwrap();
            assert!(t.render(&meta("", "")).unwrap().starts_with("v--"));
        }
    }

    #[test]
    fn random_is_fresh_and_base62() {
        let t = UsernameTemplate::parse("{{ random 32 }}").unwrap();
        let a = t.render(&meta("", "")).unwrap();
        let b = t.render(&meta("", "")).unwrap();
        assert_eq!(a.len(), 32);
        assert!(is_base62(&a));
        assert_ne!(a, b);
        assert_eq!(render("{{ random 0 }}"), "");
    }

    #[test]
    fn random_rejects_bad_lengths() {
        for source in [
            "{{ random -1 }}",
            "{{ random 1025 }}",
            "{{ random 99999999999 }}",
        ] {
            assert!(
                matches!(
                    parse_err(source),
                    TemplateError::InvalidArgument {
                        function: "random",
                        ..
                    }
                ),
                "{source}"
            );
        }
    }

    #[test]
    fn truncate_forms() {
        assert_eq!(render("{{ truncate 2 .RoleName }}"), "my");
        assert_eq!(render("{{ .RoleName | truncate 2 }}"), "my");
        assert_eq!(render("{{ .RoleName | truncate 100 }}"), "my-role");
    }

    #[test]
    fn truncate_rejects_non_positive_length() {
        let err = parse_err("{{ .RoleName | truncate 0 }}");
        assert!(
            err.to_string().contains("truncate: length must be > 0"),
            "{err}"
        );
        assert!(matches!(
            parse_err("{{ truncate -3 \"x\" }}"),
            TemplateError::InvalidArgument { .. }
        ));
    }

    #[test]
    fn truncate_keeps_utf8_whole() {
        let t = UsernameTemplate::parse("{{ .RoleName | truncate 2 }}").unwrap();
        // 'é' is two bytes starting at byte 1: cutting at 2 would split it.
        assert_eq!(t.render(&meta("", "héllo")).unwrap(), "h");
    }

    #[test]
    fn truncate_sha256() {
        assert_eq!(
            render(r#"{{ "abcdefghijklmnop" | truncate_sha256 12 }}"#),
            "abcdc1bd5d19"
        );
        assert_eq!(
            render(r#"{{ truncate_sha256 16 "abcdefghijklmnop" }}"#),
            "abcdefghijklmnop"
        );
        let err = parse_err(r#"{{ truncate_sha256 8 "x" }}"#);
        assert!(err.to_string().contains("length must be > 8"), "{err}");
    }

    #[test]
    fn case_functions() {
        assert_eq!(render("{{ .RoleName | uppercase }}"), "MY-ROLE");
        assert_eq!(render(r#"{{ lowercase "MiXeD" }}"#), "mixed");
    }

    #[test]
    fn replace_forms() {
        assert_eq!(render(r#"{{ .RoleName | replace "-" "_" }}"#), "my_role");
        assert_eq!(render(r#"{{ replace "o" "0" "foo" }}"#), "f00");
        // Go's strings.ReplaceAll with an empty needle inserts between every rune.
        assert_eq!(render(r#"{{ replace "" "." "ab" }}"#), ".a.b.");
    }

    #[test]
    fn hashing_and_encoding() {
        assert_eq!(
            render(r#"{{ "abc" | sha256 }}"#),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(render(r#"{{ base64 "hello" }}"#), "aGVsbG8=");
    }

    #[test]
    fn uuid_is_v4() {
        let id = render("{{ uuid }}");
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, render("{{ uuid }}"));
    }

    #[test]
    fn unix_times() {
        assert_eq!(render_fixed("{{ unix_time }}"), "1700000000");
        assert_eq!(render_fixed("{{ unix_time_millis }}"), "1700000000012");
        let now = Utc::now().timestamp();
        let rendered: i64 = render("{{ unix_time }}").parse().unwrap();
        assert!((rendered - now).abs() <= 5);
    }

    #[test]
    fn timestamp_layouts() {
        let cases = [
            ("2006-01-02T15:04:05Z07:00", "2023-11-14T22:13:20Z"),
            ("2006-01-02 15:04:05-0700", "2023-11-14 22:13:20+0000"),
            (
                "2006-01-02T15:04:05.000-07:00",
                "2023-11-14T22:13:20.012+00:00",
            ),
            ("05.999999999", "20.01234"),
            ("05,000000", "20,012340"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Tue Nov 14 22:13:20 UTC 2023",
            ),
            ("Monday, January 2, 06", "Tuesday, November 14, 23"),
            ("3:4:5 PM pm", "10:13:20 PM pm"),
            ("03:04 -07 Z0700", "10:13 +00 Z"),
            ("20060102150405", "20231114221320"),
            ("1/2 002 __2", "11/14 318 318"),
            ("_2006", "_2023"),
            ("Janet Monty", "Janet Monty"),
            ("2006-01-02%Y", "2023-11-14%Y"),
            (".000x", ".012x"),
        ];
        for (layout, want) in cases {
            let source = format!("{{{{ timestamp \"{layout}\" }}}}");
            assert_eq!(render_fixed(&source), want, "layout {layout}");
        }
    }

    #[test]
    fn trimmed_fraction_disappears_on_whole_seconds() {
        let whole = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
        assert_eq!(format_go_time("05.999", whole), "20");
        assert_eq!(format_go_time("05.000", whole), "20.000");
    }

    #[test]
    fn string_literals() {
        assert_eq!(render(r#"{{ "a\"b\\c\nd\te" }}"#), "a\"b\\c\nd\te");
        assert_eq!(render(r#"{{ "\x41\u00e9\101" }}"#), "Aé\u{41}");
        assert_eq!(render("{{ `raw\\n \"x\"` }}"), "raw\\n \"x\"");
        assert_eq!(render("{{ `multi\nline` }}"), "multi\nline");
        assert_eq!(render(r#"{{ "{{" }}x{{ "}}" }}"#), "{{x}}");
    }

    #[test]
    fn integer_actions_print_in_decimal() {
        assert_eq!(render("{{ 42 }}{{ -7 }}{{ +3 }}"), "42-73");
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(
            render(r#"{{ printf "%s|%d|%v|%v|100%%" .RoleName 12 "x" -4 }}"#),
            "my-role|12|x|-4|100%"
        );
        assert_eq!(render(r#"{{ printf "no verbs" }}"#), "no verbs");
    }

    #[test]
    fn printf_errors() {
        for source in [
            r#"{{ printf "%s-%s" "a" }}"#,
            r#"{{ printf "%s" "a" "b" }}"#,
            r#"{{ printf "%s" 5 }}"#,
            r#"{{ printf "%d" "x" }}"#,
            r#"{{ printf "%x" "x" }}"#,
            r#"{{ printf "%" }}"#,
        ] {
            assert!(
                matches!(
                    parse_err(source),
                    TemplateError::InvalidArgument {
                        function: "printf",
                        ..
                    }
                ),
                "{source}"
            );
        }
        assert!(matches!(
            parse_err("{{ printf }}"),
            TemplateError::ArgumentCount { .. }
        ));
        assert!(matches!(
            parse_err("{{ printf 5 }}"),
            TemplateError::ArgumentType { .. }
        ));
    }

    #[test]
    fn piped_value_is_the_last_argument() {
        assert_eq!(render(r#"{{ "abc" | printf "%s-%s" "x" }}"#), "x-abc");
        assert_eq!(
            render(r#"{{ .RoleName | uppercase | replace "-" "." | truncate 4 }}"#),
            "MY.R"
        );
    }

    #[test]
    fn nested_parentheses() {
        assert_eq!(
            render(r#"{{ printf "<%s>" (printf "[%s]" ((.RoleName | uppercase))) }}"#),
            "<[MY-ROLE]>"
        );
        assert_eq!(render("{{ (.RoleName) }}"), "my-role");
    }

    #[test]
    fn function_name_as_argument_is_a_call() {
        assert_eq!(render_fixed(r#"{{ printf "%s" unix_time }}"#), "1700000000");
    }

    #[test]
    fn trim_markers() {
        assert_eq!(render("a \n {{- .RoleName -}} \t b"), "amy-roleb");
        assert_eq!(render("a {{- .RoleName }} b"), "amy-role b");
        assert_eq!(render("a {{ .RoleName -}}\n\n"), "a my-role");
        // No space after the dash: a negative number, not a trim marker.
        assert_eq!(render("x {{-3}} y"), "x -3 y");
    }

    #[test]
    fn comments() {
        assert_eq!(render("a{{/* note */}}b"), "ab");
        assert_eq!(render("a {{- /* multi\nline */ -}} b"), "ab");
        assert!(matches!(
            parse_err("{{/* open"),
            TemplateError::Syntax { .. }
        ));
        assert!(matches!(
            parse_err("{{/* x */ .RoleName }}"),
            TemplateError::Syntax { .. }
        ));
    }

    #[test]
    fn syntax_errors() {
        for source in [
            "{{ .RoleName",
            "{{",
            "prefix {{ .RoleName }",
            r#"{{ "unterminated }}"#,
            "{{ \"line\nbreak\" }}",
            "{{ `unterminated }}",
            "{{ }}",
            "{{- -}}",
            "{{ ( }}",
            "{{ () }}",
            "{{ (.RoleName }}",
            "{{ .RoleName) }}",
            "{{ .RoleName | }}",
            "{{ | uppercase }}",
            "{{ . }}",
            "{{ $x := 1 }}",
            "{{ if .RoleName }}x{{ end }}",
            "{{ .RoleName \"x\" }}",
            r#"{{ "a" | "b" }}"#,
            "{{ 99999999999999999999 }}",
            "{{ 010 }}",
            "{{ 1.5 }}",
            "{{ 0x10 }}",
            "{{ 'c' }}",
            r#"{{ "\q" }}"#,
            r#"{{ "\xff" }}"#,
            r#"{{ "\u12" }}"#,
            "{{ .RoleName = 1 }}",
        ] {
            assert!(
                matches!(parse_err(source), TemplateError::Syntax { .. }),
                "{source:?} gave {:?}",
                UsernameTemplate::parse(source).err()
            );
        }
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let TemplateError::Syntax { offset, .. } = parse_err("abc {{ .RoleName") else {
            panic!("expected a syntax error");
        };
        assert_eq!(offset, 4);
        let TemplateError::Syntax { offset, .. } = parse_err("{{ .RoleName ) }}") else {
            panic!("expected a syntax error");
        };
        assert_eq!(offset, 13);
    }

    #[test]
    fn unknown_names() {
        let err = parse_err("{{ foo }}");
        assert_eq!(err.to_string(), "unknown function \"foo\"");
        assert!(matches!(
            parse_err("{{ .RoleName | trunc 8 }}"),
            TemplateError::UnknownFunction { .. }
        ));
        assert!(matches!(
            parse_err(r#"{{ printf "%s" nope }}"#),
            TemplateError::UnknownFunction { .. }
        ));
        let err = parse_err("{{ .Username }}");
        assert!(matches!(err, TemplateError::UnknownField { .. }));
        assert!(err.to_string().contains(".Username"), "{err}");
        assert!(matches!(
            parse_err("{{ .RoleName.Length }}"),
            TemplateError::UnknownField { .. }
        ));
    }

    #[test]
    fn arity_and_type_errors() {
        let err = parse_err("{{ .RoleName | truncate }}");
        assert!(matches!(
            err,
            TemplateError::ArgumentCount {
                function: "truncate",
                got: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("usage"), "{err}");
        assert!(matches!(
            parse_err("{{ uuid 4 }}"),
            TemplateError::ArgumentCount { .. }
        ));
        assert!(matches!(
            parse_err(r#"{{ truncate "8" .RoleName }}"#),
            TemplateError::ArgumentType { position: 1, .. }
        ));
        assert!(matches!(
            parse_err("{{ 5 | uppercase }}"),
            TemplateError::ArgumentType { .. }
        ));
        assert!(matches!(
            parse_err("{{ random .RoleName }}"),
            TemplateError::ArgumentType { .. }
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!(
            "{{{{ {}.RoleName{} }}}}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(matches!(parse_err(&deep), TemplateError::TooDeep { .. }));
        let long = format!("{{{{ .RoleName{} }}}}", " | uppercase".repeat(5000));
        assert!(matches!(parse_err(&long), TemplateError::TooDeep { .. }));
        let ok = format!("{{{{ {}.RoleName{} }}}}", "(".repeat(20), ")".repeat(20));
        assert_eq!(render(&ok), "my-role");
    }

    #[test]
    fn non_ascii_text_and_strings() {
        assert_eq!(render("ü-{{ \"é\" | uppercase }}-€"), "ü-É-€");
        assert_eq!(render(r#"{{ "ß" | uppercase }}"#), "ß");
    }

    /// A short template that grows its value ninefold per step used to exhaust memory (and
    /// time) during `parse`, which renders once to validate; reproduced with the
    /// `username_template` fuzz target's binary.
    #[test]
    fn values_cannot_grow_without_bound() {
        let chain = format!(
            "{{{{ \"\" {}}}}}",
            "| replace \"\" \"aaaaaaaa\" ".repeat(12)
        );
        assert!(matches!(
            UsernameTemplate::parse(&chain),
            Err(TemplateError::InvalidArgument {
                function: "replace",
                ..
            })
        ));
        let chained = format!(
            "{{{{ \"ab\" {}}}}}",
            "| printf \"%s%s\" .RoleName ".repeat(20)
        );
        assert!(UsernameTemplate::parse(&chained).is_ok());
        let long = UsernameTemplate::parse("{{ .DisplayName | lowercase }}").unwrap();
        assert!(
            long.render(&meta(&"A".repeat(MAX_VALUE_LEN + 1), "r"))
                .is_err()
        );
        assert_eq!(replace("ab", "", "-").unwrap(), "-a-b-");
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            parse_err("{{ truncate 0 .RoleName }}").to_string(),
            "truncate: length must be > 0, got 0"
        );
        assert_eq!(
            parse_err("{{ 5 | uppercase }}").to_string(),
            "uppercase: argument 1 must be a string, got an integer"
        );
    }
}
