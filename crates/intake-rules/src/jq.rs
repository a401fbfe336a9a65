//! jq expressions for declarative rules: compiled once with jaq, checked against the bounds of
//! spec pipeline.md §7.4 before compiling, run with `$` variables over JSON input.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data::JustLut, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value;

/// Most output bytes one expression may produce.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Largest literal bound `range` accepts.
pub const MAX_RANGE: u64 = 100_000;

const FORBIDDEN: &[&str] = &[
    "def",
    "repeat",
    "while",
    "until",
    "input",
    "inputs",
    "env",
    "$ENV",
    "debug",
    "stderr",
    "input_filename",
    "halt",
    "halt_error",
    "import",
    "include",
    "$__loc__",
];

/// A compiled expression.
pub struct Expr {
    pub source: String,
    filter: jaq_core::Filter<JustLut<Val>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The tokens of an expression outside string literals: identifiers (with a leading `$` when
/// present) and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push("\"\"".to_owned());
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Checks the bounds: no forbidden builtins, `recurse` only bare, `range` only with literal
/// bounds up to [`MAX_RANGE`].
pub fn check_bounds(code: &str) -> Result<(), String> {
    let toks = tokens(code);
    for (i, t) in toks.iter().enumerate() {
        if FORBIDDEN.contains(&t.as_str()) {
            return Err(format!("`{t}` is not allowed in rule expressions"));
        }
        let next = toks.get(i + 1).map(String::as_str);
        if t == "recurse" && next == Some("(") {
            return Err("`recurse(f)` is not allowed in rule expressions".into());
        }
        if t == "range" {
            if next != Some("(") {
                return Err("`range` needs literal bounds".into());
            }
            let mut j = i + 2;
            loop {
                let arg = toks.get(j).map(String::as_str).unwrap_or_default();
                let n: u64 = arg
                    .parse()
                    .map_err(|_| "`range` accepts only literal integer bounds".to_owned())?;
                if n > MAX_RANGE {
                    return Err(format!("`range` bounds may not exceed {MAX_RANGE}"));
                }
                match toks.get(j + 1).map(String::as_str) {
                    Some(";") => j += 2,
                    Some(")") => break,
                    _ => return Err("`range` accepts only literal integer bounds".into()),
                }
            }
        }
    }
    Ok(())
}

impl Expr {
    /// Compiles `code` seeing the variables `vars` (names without `$`).
    pub fn compile(code: &str, vars: &[String]) -> Result<Expr, String> {
        check_bounds(code)?;
        let names: Vec<String> = vars.iter().map(|v| format!("${v}")).collect();
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                format!(
                    "cannot parse jq expression {code:?} ({} errors)",
                    errs.len()
                )
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(names.iter().map(String::as_str))
            .compile(modules)
            .map_err(|errs| {
                let what: Vec<String> = errs
                    .iter()
                    .flat_map(|(_, e)| e.iter().map(|(name, _)| name.to_string()))
                    .collect();
                format!(
                    "cannot compile jq expression {code:?}: undefined {}",
                    what.join(", ")
                )
            })?;
        Ok(Expr {
            source: code.to_owned(),
            filter,
        })
    }

    /// The first output of the expression over `input`, with `vars` bound in compile order; `None`
    /// when it yields nothing.
    pub fn first(&self, input: &Value, vars: &[Value]) -> Result<Option<Value>, String> {
        let to_val = |v: &Value| {
            jaq_json::read::parse_single(v.to_string().as_bytes()).map_err(|e| e.to_string())
        };
        let input = to_val(input)?;
        let vals = vars.iter().map(to_val).collect::<Result<Vec<_>, _>>()?;
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new(vals));
        let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
        match out.next() {
            None => Ok(None),
            Some(Err(e)) => Err(format!("{}: {e}", self.source)),
            Some(Ok(v)) => {
                let text = v.to_string();
                if text.len() > MAX_OUTPUT {
                    return Err(format!(
                        "{}: output larger than {MAX_OUTPUT} bytes",
                        self.source
                    ));
                }
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| format!("{}: output is not JSON: {e}", self.source))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_with_variables() {
        let e = Expr::compile("[.a[] | select(. > $min)] | sort", &["min".into()]).unwrap();
        assert_eq!(
            e.first(&json!({"a": [3, 1, 5]}), &[json!(2)]).unwrap(),
            Some(json!([3, 5]))
        );
        let e = Expr::compile("$x + $y", &["x".into(), "y".into()]).unwrap();
        assert_eq!(
            e.first(&json!(null), &[json!("a"), json!("b")]).unwrap(),
            Some(json!("ab"))
        );
        let e = Expr::compile(".x // \"unknown\"", &[]).unwrap();
        assert_eq!(e.first(&json!({}), &[]).unwrap(), Some(json!("unknown")));
        let e = Expr::compile("empty", &[]).unwrap();
        assert_eq!(e.first(&json!({}), &[]).unwrap(), None);
    }

    #[test]
    fn bounds() {
        for bad in [
            "def f: 1; f",
            "repeat(.)",
            "[range(0; 1000000)]",
            "range(.n)",
            "recurse(.a)",
            "$ENV",
            "input",
        ] {
            assert!(Expr::compile(bad, &[]).is_err(), "{bad}");
        }
        assert!(Expr::compile("[range(0; 10)] | length", &[]).is_ok());
        assert!(Expr::compile("[recurse] | length", &[]).is_ok());
        assert!(Expr::compile("\"def while\" | length", &[]).is_ok());
        assert!(Expr::compile("$undefined", &[]).is_err());
    }
}
