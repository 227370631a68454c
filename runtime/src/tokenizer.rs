//! Text to token ids: a vocabulary built from the training split, with a padding token (id 0)
//! and an unknown token (id 1) for anything the training texts did not have. Characters or
//! words; sequences padded or cut to a fixed length, ready for `Embedding`.

use std::collections::HashMap;
use tch::Tensor;

pub const PAD: i64 = 0;
pub const UNKNOWN: i64 = 1;

/// How text is split into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Chars,
    Words,
}

#[derive(Debug, Clone)]
pub struct Tokenizer {
    tokens: Vec<String>,
    index: HashMap<String, i64>,
    granularity: Granularity,
    lowercase: bool,
    length: usize,
}

impl Tokenizer {
    /// A character vocabulary of the characters seen at least `min_count` times in `texts`.
    pub fn chars(texts: &[impl AsRef<str>], min_count: usize, length: usize) -> Tokenizer {
        Tokenizer::build(texts, Granularity::Chars, min_count, length)
    }

    /// A word vocabulary (lowercase, split at anything that is not a letter or digit).
    pub fn words(texts: &[impl AsRef<str>], min_count: usize, length: usize) -> Tokenizer {
        Tokenizer::build(texts, Granularity::Words, min_count, length)
    }

    fn build(texts: &[impl AsRef<str>], granularity: Granularity, min_count: usize, length: usize) -> Tokenizer {
        let mut tokenizer = Tokenizer {
            tokens: vec!["<pad>".into(), "<unk>".into()],
            index: HashMap::new(),
            granularity,
            lowercase: true,
            length: length.max(1),
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for token in tokenizer.split(text.as_ref()) {
                *counts.entry(token).or_default() += 1;
            }
        }
        let mut frequent: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= min_count.max(1)).collect();
        // Most frequent first; ties by text, so the same texts always give the same ids.
        frequent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (token, _) in frequent {
            tokenizer.index.insert(token.clone(), tokenizer.tokens.len() as i64);
            tokenizer.tokens.push(token);
        }
        tokenizer
    }

    fn split(&self, text: &str) -> Vec<String> {
        let text = if self.lowercase { text.to_lowercase() } else { text.to_owned() };
        match self.granularity {
            Granularity::Chars => text.chars().map(String::from).collect(),
            Granularity::Words => text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Tokens including `<pad>` and `<unk>`.
    pub fn vocab_size(&self) -> i64 {
        self.tokens.len() as i64
    }

    pub fn length(&self) -> usize {
        self.length
    }

    /// Token ids of `text`, cut to `length` and padded with [`PAD`] at the end.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .split(text)
            .iter()
            .take(self.length)
            .map(|t| self.index.get(t).copied().unwrap_or(UNKNOWN))
            .collect();
        ids.resize(self.length, PAD);
        ids
    }

    /// `[texts, length]` Int64 ids.
    pub fn encode_batch(&self, texts: &[impl AsRef<str>]) -> Tensor {
        let ids: Vec<i64> = texts.iter().flat_map(|t| self.encode(t.as_ref())).collect();
        Tensor::from_slice(&ids).reshape([texts.len() as i64, self.length as i64])
    }

    /// The text of token ids (padding left out).
    pub fn decode(&self, ids: &[i64]) -> String {
        let tokens = ids
            .iter()
            .filter(|&&id| id != PAD)
            .map(|&id| self.tokens.get(id as usize).map(String::as_str).unwrap_or("<unk>"));
        match self.granularity {
            Granularity::Chars => tokens.collect(),
            Granularity::Words => tokens.collect::<Vec<_>>().join(" "),
        }
    }

    /// Share of the tokens of `texts` that the vocabulary knows.
    pub fn coverage(&self, texts: &[impl AsRef<str>]) -> f64 {
        let (mut known, mut total) = (0usize, 0usize);
        for text in texts {
            for token in self.split(text.as_ref()) {
                total += 1;
                known += self.index.contains_key(&token) as usize;
            }
        }
        known as f64 / total.max(1) as f64
    }
}
