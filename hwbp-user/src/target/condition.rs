//! Conditions: `TARGET if COND`, as gdb's `watch x if x > 5`, evaluated by
//! the BPF program for each hit before anything is recorded.
//!
//! ```text
//! COND    := OR
//! OR      := AND ('||' AND)*
//! AND     := UNARY ('&&' UNARY)*
//! UNARY   := '!' UNARY | '(' OR ')' | TEST
//! TEST    := TERM [('==' | '!=' | '<' | '<=' | '>' | '>=' | '&') TERM]
//! TERM    := OPERAND | INTEGER | "STRING"
//! OPERAND := value | old | arg0..arg5 | NAME (an argument) | comm | pid | tid | cpu
//! ```
//!
//! Parsing ([`Condition::parse`]) is syntactic and points at the column of
//! what it cannot read; which operands exist and what type they have is
//! known only once the target is resolved, when [`Condition::compile`]
//! turns the condition into the [`CondProgram`] the BPF program interprets:
//! one comparison per instruction, `&&`, `||` and `!` as forward jumps
//! (as classic BPF filters do), so the program ends within
//! [`MAX_COND_INSNS`] steps whatever the condition. Comparisons are signed
//! when both sides' types are (a literal takes the other side's); a bare
//! operand tests non-zero and `a & MASK` tests any common bit.

use std::fmt;

use hwbp_common::{
    COMM_LEN, COND_ACCEPT, COND_ARG0, COND_CPU, COND_IMM, COND_OLD, COND_OP_COMM, COND_OP_EQ,
    COND_OP_LE, COND_OP_LT, COND_OP_MASK, COND_PID, COND_REJECT, COND_SIGNED, COND_TID, COND_VALUE,
    CondInsn, CondProgram, MAX_COND_INSNS,
};
use thiserror::Error;

/// A parsed condition, with the text it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// As written after `if`, trimmed.
    pub text: String,
    pub expr: Expr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `lhs OP rhs`.
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Term,
    },
    /// A bare operand: true when it is not zero.
    Test(Operand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `&`: any bit in common.
    Mask,
}

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Mask => "&",
        }
    }

    /// The operator with its sides swapped: `5 < value` is `value > 5`.
    fn mirrored(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            other => other,
        }
    }
}

/// An operand and where it starts in the condition (a byte offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operand {
    pub kind: OperandKind,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperandKind {
    Value,
    Old,
    /// `argN`: integer argument register N.
    Arg(u8),
    /// An argument by its name in BTF or DWARF.
    Named(String),
    Comm,
    Pid,
    Tid,
    Cpu,
}

impl fmt::Display for OperandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value => f.write_str("value"),
            Self::Old => f.write_str("old"),
            Self::Arg(i) => write!(f, "arg{i}"),
            Self::Named(name) => f.write_str(name),
            Self::Comm => f.write_str("comm"),
            Self::Pid => f.write_str("pid"),
            Self::Tid => f.write_str("tid"),
            Self::Cpu => f.write_str("cpu"),
        }
    }
}

/// The right side of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Operand(Operand),
    Int { value: i128, pos: usize },
    Str { bytes: Vec<u8>, pos: usize },
}

/// What is wrong with a condition, and where: shown as the condition with
/// a caret under the column.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}\n    {text}\n    {caret:>width$}", caret = "^", width = column(.text, *.pos) + 1)]
pub struct ConditionError {
    pub text: String,
    /// Byte offset in `text`.
    pub pos: usize,
    pub message: String,
}

/// The column (in characters) of byte offset `pos` of `text`.
fn column(text: &str, pos: usize) -> usize {
    text.char_indices().take_while(|&(i, _)| i < pos).count()
}

/// An integer operand's type: its width and signedness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntType {
    /// 1, 2, 4 or 8.
    pub bytes: u8,
    pub signed: bool,
    /// As a reader knows it (`int`, `unsigned long`), for messages.
    pub name: String,
}

impl IntType {
    pub fn unsigned(bytes: u8) -> Self {
        Self {
            bytes,
            signed: false,
            name: format!("u{}", u32::from(bytes) * 8),
        }
    }
}

/// What the operands of one target are: known once it is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operands {
    /// `value` and `old`: their type, or why the program cannot read them.
    pub value: Result<IntType, String>,
    /// `arg0`..`arg5` and named arguments: None when the target is not an
    /// execute breakpoint (the message says why).
    pub args: Result<Arguments, String>,
}

/// Where a named argument is: its register and type, or where it is
/// instead (`xmm0`, `memory (on the stack)`).
pub type ArgPlace = Result<(u8, IntType), String>;

/// An execute target's arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arguments {
    /// The function, for messages.
    pub function: String,
    /// Each parameter by name: its register and type, or where it is
    /// instead (`xmm0`, `stack`).
    pub named: Vec<(String, ArgPlace)>,
}

impl Condition {
    /// Parses the text after `if`.
    pub fn parse(text: &str) -> Result<Self, ConditionError> {
        let text = text.trim();
        let tokens = lex(text)?;
        let mut parser = Parser {
            text,
            tokens,
            at: 0,
        };
        if parser.tokens.is_empty() {
            return Err(parser.error(
                0,
                "empty condition: write one after `if`, e.g. `if value > 5`",
            ));
        }
        let expr = parser.or()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            let (pos, shown) = (token.pos, token.kind.to_string());
            return Err(parser.error(
                pos,
                &format!("unexpected `{shown}`: join comparisons with && or ||"),
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            expr,
        })
    }

    fn error(&self, pos: usize, message: impl Into<String>) -> ConditionError {
        ConditionError {
            text: self.text.clone(),
            pos,
            message: message.into(),
        }
    }

    /// The program for the BPF side, given what the target's operands are.
    pub fn compile(&self, operands: &Operands) -> Result<CondProgram, ConditionError> {
        let leaves = leaves(&self.expr);
        if leaves > MAX_COND_INSNS {
            return Err(self.error(
                0,
                format!("{leaves} comparisons: a condition holds at most {MAX_COND_INSNS}"),
            ));
        }
        let mut insns = Vec::with_capacity(leaves);
        self.emit(&self.expr, COND_ACCEPT, COND_REJECT, operands, &mut insns)?;
        let mut program = CondProgram::default();
        program.insns[..insns.len()].copy_from_slice(&insns);
        Ok(program)
    }

    /// Appends `expr`'s instructions: they go on at `t` when it is true,
    /// at `f` when not.
    fn emit(
        &self,
        expr: &Expr,
        t: u8,
        f: u8,
        operands: &Operands,
        out: &mut Vec<CondInsn>,
    ) -> Result<(), ConditionError> {
        match expr {
            Expr::And(a, b) => {
                let b_start = (out.len() + leaves(a)) as u8;
                self.emit(a, b_start, f, operands, out)?;
                self.emit(b, t, f, operands, out)
            }
            Expr::Or(a, b) => {
                let b_start = (out.len() + leaves(a)) as u8;
                self.emit(a, t, b_start, operands, out)?;
                self.emit(b, t, f, operands, out)
            }
            Expr::Not(a) => self.emit(a, f, t, operands, out),
            Expr::Test(operand) => {
                let zero = Term::Int {
                    value: 0,
                    pos: operand.pos,
                };
                out.push(self.comparison(operand, CmpOp::Ne, &zero, t, f, operands)?);
                Ok(())
            }
            Expr::Compare { lhs, op, rhs } => {
                out.push(self.comparison(lhs, *op, rhs, t, f, operands)?);
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn comparison(
        &self,
        lhs: &Operand,
        op: CmpOp,
        rhs: &Term,
        t: u8,
        f: u8,
        operands: &Operands,
    ) -> Result<CondInsn, ConditionError> {
        let (code, swap) = match op {
            CmpOp::Eq => (COND_OP_EQ, false),
            CmpOp::Ne => (COND_OP_EQ, true),
            CmpOp::Lt => (COND_OP_LT, false),
            CmpOp::Ge => (COND_OP_LT, true),
            CmpOp::Le => (COND_OP_LE, false),
            CmpOp::Gt => (COND_OP_LE, true),
            CmpOp::Mask => (COND_OP_MASK, false),
        };
        let (jt, jf) = if swap { (f, t) } else { (t, f) };
        let mut insn = CondInsn {
            op: code,
            jt,
            jf,
            ..CondInsn::default()
        };
        if lhs.kind == OperandKind::Comm {
            let Term::Str { bytes, pos } = rhs else {
                return Err(self.error(
                    term_pos(rhs),
                    "`comm` compares with a string only, e.g. `comm == \"cat\"`",
                ));
            };
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(self.error(lhs.pos, "`comm` takes == and != only"));
            }
            if bytes.len() >= COMM_LEN || bytes.contains(&0) {
                return Err(self.error(
                    *pos,
                    format!(
                        "a comm is at most {} bytes with no NUL: the kernel cuts longer names",
                        COMM_LEN - 1
                    ),
                ));
            }
            let mut comm = [0u8; COMM_LEN];
            comm[..bytes.len()].copy_from_slice(bytes);
            insn.op = COND_OP_COMM;
            insn.imm = [
                u64::from_le_bytes(comm[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(comm[8..].try_into().unwrap_or_default()),
            ];
            return Ok(insn);
        }
        let (index, lty) = self.operand(lhs, operands)?;
        insn.lhs = index;
        insn.lshift = 64 - lty.bytes * 8;
        match rhs {
            Term::Str { pos, .. } => {
                return Err(self.error(
                    *pos,
                    format!(
                        "a string compares with `comm` only, not with `{}`",
                        lhs.kind
                    ),
                ));
            }
            Term::Operand(r) if r.kind == OperandKind::Comm => {
                return Err(self.error(r.pos, "`comm` compares with a string only"));
            }
            Term::Operand(r) => {
                let (index, rty) = self.operand(r, operands)?;
                insn.rhs = index;
                insn.rshift = 64 - rty.bytes * 8;
                if lty.signed && rty.signed {
                    insn.flags |= COND_SIGNED;
                }
            }
            Term::Int { value, pos } => {
                insn.rhs = COND_IMM;
                insn.imm[0] = self.literal(*value, *pos, lhs, &lty)?;
                if lty.signed {
                    insn.flags |= COND_SIGNED;
                }
            }
        }
        // A mask tests the bits as they are (a signed comparison flips
        // the sign bits).
        if op == CmpOp::Mask {
            insn.flags &= !COND_SIGNED;
        }
        Ok(insn)
    }

    /// A literal compared with `lhs` of type `ty`, as the program sees it
    /// (two's complement in 64 bits).
    fn literal(
        &self,
        value: i128,
        pos: usize,
        lhs: &Operand,
        ty: &IntType,
    ) -> Result<u64, ConditionError> {
        let bits = u32::from(ty.bytes) * 8;
        let (min, max) = if ty.signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        if value < min || value > max {
            return Err(self.error(
                pos,
                format!(
                    "{value} is out of range of `{}` ({}, {min} to {max}): the comparison could \
                     never change",
                    lhs.kind, ty.name
                ),
            ));
        }
        Ok(value as i64 as u64)
    }

    /// The program's operand index and type of `operand`.
    fn operand(
        &self,
        operand: &Operand,
        operands: &Operands,
    ) -> Result<(u8, IntType), ConditionError> {
        let at = operand.pos;
        let args = || {
            operands
                .args
                .as_ref()
                .map_err(|why| self.error(at, format!("`{}`: {why}", operand.kind)))
        };
        Ok(match &operand.kind {
            OperandKind::Value | OperandKind::Old => {
                let ty = operands
                    .value
                    .clone()
                    .map_err(|why| self.error(at, format!("`{}`: {why}", operand.kind)))?;
                let index = if operand.kind == OperandKind::Value {
                    COND_VALUE
                } else {
                    COND_OLD
                };
                (index, ty)
            }
            OperandKind::Arg(i) => {
                let args = args()?;
                // The parameter in that register gives the type, when known.
                let ty = args
                    .named
                    .iter()
                    .find_map(|(_, p)| p.as_ref().ok().filter(|(r, _)| r == i))
                    .map_or_else(|| IntType::unsigned(8), |(_, ty)| ty.clone());
                (COND_ARG0 + i, ty)
            }
            OperandKind::Named(name) => {
                let args = args()?;
                match args.named.iter().find(|(n, _)| n == name) {
                    Some((_, Ok((register, ty)))) => (COND_ARG0 + register, ty.clone()),
                    Some((_, Err(where_))) => {
                        return Err(self.error(
                            at,
                            format!(
                                "argument `{name}` of {} is in {where_}, where the BPF program \
                                 cannot read it; only integer and pointer arguments in rdi, rsi, \
                                 rdx, rcx, r8 and r9 can be compared",
                                args.function
                            ),
                        ));
                    }
                    None => {
                        let known: Vec<&str> = args.named.iter().map(|(n, _)| n.as_str()).collect();
                        let names = if known.is_empty() {
                            format!(
                                "{} has no named arguments (no BTF or DWARF for it)",
                                args.function
                            )
                        } else {
                            format!("arguments of {}: {}", args.function, known.join(", "))
                        };
                        return Err(self.error(
                            at,
                            format!(
                                "unknown operand `{name}`: use value, old, comm, pid, tid, cpu, \
                                 arg0..arg5 or an argument by name ({names})"
                            ),
                        ));
                    }
                }
            }
            OperandKind::Pid => (COND_PID, IntType::unsigned(4)),
            OperandKind::Tid => (COND_TID, IntType::unsigned(4)),
            OperandKind::Cpu => (COND_CPU, IntType::unsigned(4)),
            OperandKind::Comm => {
                return Err(self.error(at, "`comm` compares with a string only"));
            }
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

/// Prints fully parenthesized where operators nest, so that the text
/// parses back to the same condition.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Or(a, b) => write!(f, "({a} || {b})"),
            Self::And(a, b) => write!(f, "({a} && {b})"),
            Self::Not(a) => write!(f, "!{a}"),
            Self::Compare { lhs, op, rhs } => write!(f, "{} {} {rhs}", lhs.kind, op.as_str()),
            Self::Test(operand) => write!(f, "{}", operand.kind),
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operand(o) => write!(f, "{}", o.kind),
            Self::Int { value, .. } => write!(f, "{value}"),
            Self::Str { bytes, .. } => {
                f.write_str("\"")?;
                for &b in bytes {
                    match b {
                        b'"' => f.write_str("\\\"")?,
                        b'\\' => f.write_str("\\\\")?,
                        0x20..=0x7e => write!(f, "{}", b as char)?,
                        _ => write!(f, "\\x{b:02x}")?,
                    }
                }
                f.write_str("\"")
            }
        }
    }
}

fn term_pos(term: &Term) -> usize {
    match term {
        Term::Operand(o) => o.pos,
        Term::Int { pos, .. } | Term::Str { pos, .. } => *pos,
    }
}

/// Comparisons in `expr`: one instruction each.
fn leaves(expr: &Expr) -> usize {
    match expr {
        Expr::Or(a, b) | Expr::And(a, b) => leaves(a) + leaves(b),
        Expr::Not(a) => leaves(a),
        Expr::Compare { .. } | Expr::Test(_) => 1,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    Ident(String),
    Int(i128),
    Str(Vec<u8>),
    /// `== != <= >= < > & && || ! ( )`.
    Punct(&'static str),
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => f.write_str(s),
            Self::Int(v) => write!(f, "{v}"),
            Self::Str(_) => f.write_str("string"),
            Self::Punct(p) => f.write_str(p),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    pos: usize,
}

const PUNCTS: [&str; 13] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "&", "!", "(", ")", "=",
];

fn lex(text: &str) -> Result<Vec<Token>, ConditionError> {
    let error = |pos: usize, message: String| ConditionError {
        text: text.to_owned(),
        pos,
        message,
    };
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Ident(text[start..i].to_owned()),
                pos: start,
            });
        } else if c.is_ascii_digit()
            || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let literal = &text[start..i];
            let (negative, digits) = match literal.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, literal),
            };
            let magnitude = match digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => digits.parse::<u64>().ok(),
            }
            .ok_or_else(|| {
                error(
                    start,
                    format!(
                        "bad number `{literal}`: write a decimal or 0x-prefixed hex number of \
                         at most 64 bits, e.g. 4096, -1 or 0x1000"
                    ),
                )
            })?;
            let value = if negative {
                -i128::from(magnitude)
            } else {
                i128::from(magnitude)
            };
            tokens.push(Token {
                kind: TokenKind::Int(value),
                pos: start,
            });
        } else if c == b'"' {
            i += 1;
            let mut s = Vec::new();
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(error(
                            start,
                            "unterminated string: close it with `\"`".into(),
                        ));
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        match bytes.get(i + 1) {
                            Some(&e @ (b'"' | b'\\')) => s.push(e),
                            Some(b'x') => {
                                let hex = text
                                    .get(i + 2..i + 4)
                                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                                let Some(b) = hex else {
                                    return Err(error(
                                        i,
                                        "bad escape: write \\xHH with two hex digits".into(),
                                    ));
                                };
                                s.push(b);
                                i += 2;
                            }
                            _ => {
                                return Err(error(
                                    i,
                                    "bad escape: a string takes \\\", \\\\ and \\xHH".into(),
                                ));
                            }
                        }
                        i += 2;
                    }
                    Some(&b) => {
                        s.push(b);
                        i += 1;
                    }
                }
            }
            tokens.push(Token {
                kind: TokenKind::Str(s),
                pos: start,
            });
        } else if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            if *p == "=" {
                return Err(error(i, "`=` assigns: compare with `==`".into()));
            }
            i += p.len();
            tokens.push(Token {
                kind: TokenKind::Punct(p),
                pos: start,
            });
        } else {
            let shown = text[i..].chars().next().unwrap_or('?');
            return Err(error(
                i,
                format!(
                    "unexpected `{shown}`: a condition compares operands with == != < <= > >= &, \
                     joined by && || ! and parentheses"
                ),
            ));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, pos: usize, message: &str) -> ConditionError {
        ConditionError {
            text: self.text.to_owned(),
            pos,
            message: message.to_owned(),
        }
    }

    fn peek_punct(&self, p: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token { kind: TokenKind::Punct(q), .. }) if *q == p)
    }

    /// Where the next token starts, or the end of the text.
    fn here(&self) -> usize {
        self.tokens.get(self.at).map_or(self.text.len(), |t| t.pos)
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.peek_punct("||") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.unary()?;
        while self.peek_punct("&&") {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.peek_punct("!") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek_punct("(") {
            let open = self.here();
            self.at += 1;
            let inner = self.or()?;
            if !self.peek_punct(")") {
                let message = format!(
                    "expected `)` to close the `(` at column {}",
                    column(self.text, open) + 1
                );
                return Err(self.error(self.here(), &message));
            }
            self.at += 1;
            return Ok(inner);
        }
        self.test()
    }

    fn test(&mut self) -> Result<Expr, ConditionError> {
        let left = self.term()?;
        let op = match self.tokens.get(self.at) {
            Some(Token {
                kind: TokenKind::Punct(p),
                ..
            }) => match *p {
                "==" => Some(CmpOp::Eq),
                "!=" => Some(CmpOp::Ne),
                "<" => Some(CmpOp::Lt),
                "<=" => Some(CmpOp::Le),
                ">" => Some(CmpOp::Gt),
                ">=" => Some(CmpOp::Ge),
                "&" => Some(CmpOp::Mask),
                _ => None,
            },
            _ => None,
        };
        let Some(op) = op else {
            return match left {
                Term::Operand(operand) => Ok(Expr::Test(operand)),
                other => Err(self.error(
                    term_pos(&other),
                    &format!(
                        "`{other}` alone is no condition: compare it, e.g. `value == {other}`"
                    ),
                )),
            };
        };
        let op_pos = self.here();
        self.at += 1;
        let right = self.term()?;
        match (left, right) {
            (Term::Operand(lhs), rhs) => Ok(Expr::Compare { lhs, op, rhs }),
            (lhs, Term::Operand(rhs)) => Ok(Expr::Compare {
                lhs: rhs,
                op: op.mirrored(),
                rhs: lhs,
            }),
            _ => Err(self.error(
                op_pos,
                "two constants compared: one side must be an operand (value, old, an argument, \
                 comm, pid, tid or cpu)",
            )),
        }
    }

    fn term(&mut self) -> Result<Term, ConditionError> {
        let pos = self.here();
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(self.error(
                pos,
                "the condition ends early: an operand or a number is missing",
            ));
        };
        self.at += 1;
        Ok(match token.kind {
            TokenKind::Int(value) => Term::Int { value, pos },
            TokenKind::Str(bytes) => Term::Str { bytes, pos },
            TokenKind::Ident(name) => Term::Operand(Operand {
                kind: match name.as_str() {
                    "value" => OperandKind::Value,
                    "old" => OperandKind::Old,
                    "comm" => OperandKind::Comm,
                    "pid" => OperandKind::Pid,
                    "tid" => OperandKind::Tid,
                    "cpu" => OperandKind::Cpu,
                    _ => match name.strip_prefix("arg").and_then(|n| n.parse::<u8>().ok()) {
                        Some(i) if i < 6 && name.len() == 4 => OperandKind::Arg(i),
                        _ => OperandKind::Named(name),
                    },
                },
                pos,
            }),
            TokenKind::Punct(p) => {
                return Err(self.error(
                    pos,
                    &format!("unexpected `{p}`: expected an operand or a number"),
                ));
            }
        })
    }
}

/// Splits a target argument at its first ` if ` outside parentheses (a C++
/// signature may hold spaces): the target and the condition's text.
pub fn split_condition(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'i' if depth <= 0
                && i > 0
                && bytes[i - 1].is_ascii_whitespace()
                && bytes.get(i + 1) == Some(&b'f')
                && bytes.get(i + 2).is_none_or(u8::is_ascii_whitespace) =>
            {
                return Some((text[..i].trim_end(), &text[i + 2..]));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
