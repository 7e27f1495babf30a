//! Choosing among a tokenizer's templates, and naming the family of a template.

use chatlm_tokenizer::ChatTemplateSource;

use crate::TemplateError;

/// The names of a tokenizer's templates: `["default"]` for a single template, the names in file order
/// for a named list.
///
/// ```
/// use chatlm_tokenizer::ChatTemplateSource;
/// let named = ChatTemplateSource::Named(vec![("default".into(), "a".into()), ("tool_use".into(), "b".into())]);
/// assert_eq!(chatlm_template::template_names(&named), ["default", "tool_use"]);
/// ```
pub fn template_names(source: &ChatTemplateSource) -> Vec<String> {
    match source {
        ChatTemplateSource::Single(_) => vec!["default".to_string()],
        ChatTemplateSource::Named(list) => list.iter().map(|(n, _)| n.clone()).collect(),
    }
}

/// Picks the template text transformers' `get_chat_template` would use.
///
/// `name` may name one of the templates (an unknown name is an error for a named list; for a single
/// template transformers would treat the string as a template itself, which callers do by building
/// a [`ChatTemplate`](crate::ChatTemplate) directly). Without a name: `tool_use` when `has_tools` and
/// present, else `default`, else an error listing the names.
///
/// ```
/// use chatlm_tokenizer::ChatTemplateSource;
/// let named = ChatTemplateSource::Named(vec![("default".into(), "A".into()), ("tool_use".into(), "B".into())]);
/// assert_eq!(chatlm_template::select_template(&named, None, true).unwrap(), "B");
/// assert_eq!(chatlm_template::select_template(&named, None, false).unwrap(), "A");
/// ```
pub fn select_template<'a>(
    source: &'a ChatTemplateSource,
    name: Option<&str>,
    has_tools: bool,
) -> Result<&'a str, TemplateError> {
    match source {
        ChatTemplateSource::Single(t) => match name {
            None | Some("default") => Ok(t),
            Some(other) => Err(TemplateError::InvalidRequest(format!(
                "this tokenizer has a single chat template; there is no template named {other:?}"
            ))),
        },
        ChatTemplateSource::Named(list) => {
            let find = |n: &str| list.iter().find(|(k, _)| k == n).map(|(_, t)| t.as_str());
            let mut names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            match name {
                Some(n) => find(n).ok_or_else(|| {
                    TemplateError::InvalidRequest(format!(
                        "no chat template named {n:?}. Available template names are {names:?}."
                    ))
                }),
                None => {
                    let picked = if has_tools { find("tool_use").or_else(|| find("default")) } else { find("default") };
                    picked.ok_or_else(|| {
                        TemplateError::InvalidRequest(format!(
                            "This model has multiple chat templates with no default specified! Please either pass a chat template or the name of the template you wish to use to the `chat_template` argument. Available template names are {names:?}."
                        ))
                    })
                }
            }
        }
    }
}

/// Markers that identify a template family, checked in order (the more specific first).
const FAMILIES: &[(&str, &[&str])] = &[
    ("gpt-oss", &["<|channel|>", "<|start|>"]),
    ("llama3", &["<|start_header_id|>", "<|eot_id|>"]),
    ("granite", &["<|start_of_role|>"]),
    ("command-r", &["<|START_OF_TURN_TOKEN|>"]),
    ("deepseek", &["<｜Assistant｜>"]),
    ("gemma", &["<start_of_turn>"]),
    ("phi4", &["<|im_sep|>"]),
    ("smollm2", &["<|im_start|>", "SmolLM"]),
    ("qwen", &["<|im_start|>", "Qwen"]),
    ("chatml", &["<|im_start|>", "<|im_end|>"]),
    ("chatml", &["<|im_start|>"]),
    ("phi3", &["<|end|>", "<|assistant|>"]),
    ("zephyr", &["<|user|>", "<|assistant|>"]),
    ("llama2", &["[INST]", "<<SYS>>"]),
    ("mistral", &["[INST]", "[/INST]"]),
    ("chatglm", &["[gMASK]"]),
    ("openchat", &["GPT4 Correct"]),
    ("vicuna", &["USER:", "ASSISTANT:"]),
];

/// Something a template family can be read from: template text (`str`, `String`) or a tokenizer's
/// [`ChatTemplateSource`] (its default template, else its first named one).
pub trait TemplateText {
    /// The template text to inspect.
    fn template_text(&self) -> Option<&str>;
}

impl TemplateText for str {
    fn template_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl TemplateText for String {
    fn template_text(&self) -> Option<&str> {
        Some(self)
    }
}

impl TemplateText for ChatTemplateSource {
    fn template_text(&self) -> Option<&str> {
        match self {
            ChatTemplateSource::Single(t) => Some(t),
            ChatTemplateSource::Named(list) => list
                .iter()
                .find(|(n, _)| n == "default")
                .or_else(|| list.first())
                .map(|(_, t)| t.as_str()),
        }
    }
}

/// Names the family of a template from its distinctive markers (`"llama3"`, `"llama2"`, `"mistral"`,
/// `"chatml"`, `"smollm2"`, `"qwen"`, `"phi3"`, `"phi4"`, `"gemma"`, `"zephyr"`, `"deepseek"`,
/// `"command-r"`, `"granite"`, `"gpt-oss"`, `"chatglm"`, `"openchat"`, `"vicuna"`), or `None`.
///
/// ```
/// assert_eq!(chatlm_template::recognise(chatlm_template::CHATML), Some("chatml"));
/// assert_eq!(chatlm_template::recognise("{{ messages }}"), None);
/// let named = chatlm_tokenizer::ChatTemplateSource::Single("<start_of_turn>user".into());
/// assert_eq!(chatlm_template::recognise(&named), Some("gemma"));
/// ```
pub fn recognise<T: TemplateText + ?Sized>(template: &T) -> Option<&'static str> {
    let template_source = template.template_text()?;
    FAMILIES
        .iter()
        .find(|(_, markers)| markers.iter().all(|m| template_source.contains(m)))
        .map(|(name, _)| *name)
}
