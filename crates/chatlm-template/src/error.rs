//! The typed error of every template operation.

use std::path::PathBuf;

/// Why a template could not be compiled, selected or rendered.
///
/// The variants follow what a caller must do about them: fix the template
/// ([`Syntax`](Self::Syntax)), fix the conversation ([`Raised`](Self::Raised), the template's own
/// `raise_exception`, and [`InvalidRequest`](Self::InvalidRequest), the checks transformers'
/// `apply_chat_template` makes itself), or accept that the template failed
/// ([`Render`](Self::Render), [`LimitExceeded`](Self::LimitExceeded)).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template source is not valid Jinja.
    #[error("template syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// What the parser rejected.
        message: String,
        /// 1-based line of the error in the template source.
        line: usize,
        /// 1-based column (in characters) of the error in the template source.
        column: usize,
    },
    /// The template called `raise_exception(message)`: the conversation is not one the template accepts
    /// (for example roles that do not alternate). `message` is the template's own text.
    #[error("{message}")]
    Raised {
        /// The exact message the template passed to `raise_exception`.
        message: String,
    },
    /// The request was rejected before or after rendering, like the `ValueError`s of transformers'
    /// `apply_chat_template` (continue_final_message rules, empty conversation, no default template, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// Rendering failed inside the template (undefined attribute, type error, ...).
    #[error("template render error{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Render {
        /// The engine's description of the failure.
        message: String,
        /// 1-based template line where it happened, when known.
        line: Option<usize>,
    },
    /// Rendering was stopped by one of the [`Limits`](crate::Limits): the template is looping or producing
    /// unbounded output.
    #[error("template stopped: {0}")]
    LimitExceeded(String),
    /// A template file could not be read.
    #[error("cannot read chat template {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Tokenizing the rendered prompt failed.
    #[error("tokenizing the rendered prompt: {0}")]
    Tokenizer(#[from] chatlm_tokenizer::TokenizerError),
}

impl TemplateError {
    /// A short machine-readable category: `"raise_exception"` (the template's own
    /// `raise_exception`), `"invalid_request"` (the request or the template source is unusable:
    /// syntax errors, transformers' argument checks, unreadable files) or `"render"` (the template
    /// failed while running, including the resource limits and tokenization).
    ///
    /// ```
    /// use chatlm_template::TemplateError;
    /// assert_eq!(TemplateError::Raised { message: "no".into() }.kind(), "raise_exception");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            TemplateError::Raised { .. } => "raise_exception",
            TemplateError::Syntax { .. } | TemplateError::InvalidRequest(_) | TemplateError::Io { .. } => {
                "invalid_request"
            }
            TemplateError::Render { .. } | TemplateError::LimitExceeded(_) | TemplateError::Tokenizer(_) => "render",
        }
    }
}
