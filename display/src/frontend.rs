//! Which frontend shows the output, for the few things that must differ: Apache Zeppelin's
//! Jupyter bridge shows one MIME type per output (HTML first), drops `update_display_data`,
//! prints ANSI codes raw, and turns text that starts a line with `%table` into a table with its
//! own charts (DESIGN §6).

/// The frontend a kernel's output goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// JupyterLab, Notebook, VS Code, nbconvert, papermill: everything else.
    Jupyter,
    /// Apache Zeppelin's Jupyter interpreter bridge.
    Zeppelin,
}

/// `TORCHBOOK_FRONTEND=zeppelin` (or `jupyter`) when set — Zeppelin exports interpreter
/// properties as environment variables — else Zeppelin when the kernel's environment has
/// Zeppelin's own `ZEPPELIN_HOME` or `INTERPRETER_GROUP_ID`.
pub fn frontend() -> Frontend {
    detect(|name| std::env::var(name).ok())
}

fn detect(var: impl Fn(&str) -> Option<String>) -> Frontend {
    match var("TORCHBOOK_FRONTEND").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("zeppelin") => return Frontend::Zeppelin,
        Some("jupyter") => return Frontend::Jupyter,
        _ => {}
    }
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    if set("ZEPPELIN_HOME") || set("INTERPRETER_GROUP_ID") {
        Frontend::Zeppelin
    } else {
        Frontend::Jupyter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Frontend {
        detect(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn explicit_setting_wins_then_zeppelins_own_variables() {
        assert_eq!(with(&[]), Frontend::Jupyter);
        assert_eq!(with(&[("ZEPPELIN_HOME", "/opt/zeppelin")]), Frontend::Zeppelin);
        assert_eq!(with(&[("INTERPRETER_GROUP_ID", "jupyter-shared")]), Frontend::Zeppelin);
        assert_eq!(with(&[("TORCHBOOK_FRONTEND", "Zeppelin")]), Frontend::Zeppelin);
        assert_eq!(with(&[("TORCHBOOK_FRONTEND", "jupyter"), ("ZEPPELIN_HOME", "/z")]), Frontend::Jupyter);
        assert_eq!(with(&[("ZEPPELIN_HOME", "")]), Frontend::Jupyter);
    }
}
