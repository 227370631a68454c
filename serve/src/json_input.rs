//! `{"inputs": [example, …]}` parsed straight into a flat buffer of numbers while checking
//! each example's nesting against the model's per-example shape: one pass over the bytes, no
//! `serde_json::Value` tree (a 28×28 example would be 812 heap nodes). A mistake stops the
//! parse with a sentence naming where it is (`inputs[3][0]`), what was expected and what was
//! found.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The numbers of a batch in row-major order, as f32 (float models) or i64 (token models).
pub struct Parsed {
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    pub examples: usize,
}

struct Ctx<'a> {
    shape: &'a [i64],
    integer: bool,
    out: Parsed,
    path: Vec<usize>,
    /// Our message for the first mistake (serde_json's own error then only carries a marker).
    message: Option<String>,
}

impl Ctx<'_> {
    fn at(&self) -> String {
        let mut at = String::from("inputs");
        for i in &self.path {
            at.push_str(&format!("[{i}]"));
        }
        at
    }

    fn fail<E: de::Error>(&mut self, message: String) -> E {
        self.message.get_or_insert(message);
        E::custom("see message")
    }

    fn example(&self) -> String {
        crate::spec::join(self.shape)
    }
}

/// Parses `body`; `Err` is the sentence to answer 400 with.
pub fn parse(body: &[u8], shape: &[i64], integer: bool) -> Result<Parsed, String> {
    let mut ctx = Ctx { shape, integer, out: Parsed { floats: Vec::new(), ints: Vec::new(), examples: 0 }, path: Vec::new(), message: None };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result = de::Deserializer::deserialize_any(&mut deserializer, Top(&mut ctx)).and_then(|()| deserializer.end());
    match (result, ctx.message) {
        (Ok(()), _) => Ok(ctx.out),
        (Err(_), Some(message)) => Err(message),
        (Err(error), None) => Err(format!("the body is not valid JSON: {error}")),
    }
}

fn found(what: &de::Unexpected<'_>) -> String {
    match what {
        de::Unexpected::Str(s) if s.len() <= 20 => format!("the string {s:?}"),
        de::Unexpected::Str(_) => "a string".into(),
        de::Unexpected::Unit => "null".into(),
        de::Unexpected::Bool(b) => format!("{b}"),
        de::Unexpected::Float(f) => format!("the number {f}"),
        de::Unexpected::Signed(i) => format!("the number {i}"),
        de::Unexpected::Unsigned(u) => format!("the number {u}"),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "an object".into(),
        other => other.to_string(),
    }
}

/// Generates the `visit_*` methods for values a visitor does not take: each calls `self.other`.
macro_rules! refuse_others {
    ($($method:ident($($arg:ident: $ty:ty)?) => $unexpected:expr;)*) => {
        $(fn $method<E: de::Error>(self, $($arg: $ty)?) -> Result<Self::Value, E> {
            self.other($unexpected)
        })*
    };
}

struct Top<'c, 'a>(&'c mut Ctx<'a>);

impl Top<'_, '_> {
    fn other<E: de::Error>(self, what: de::Unexpected<'_>) -> Result<(), E> {
        let message = format!(
            "expected a JSON object {{\"inputs\": [example, …]}} with examples of shape [{}], found {}",
            self.0.example(),
            found(&what)
        );
        Err(self.0.fail(message))
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with \"inputs\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "inputs" && !seen {
                map.next_value_seed(Batch(&mut *self.0))?;
                seen = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen {
            Ok(())
        } else {
            self.other(de::Unexpected::Other("an object without \"inputs\""))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other(de::Unexpected::Seq)
    }

    refuse_others! {
        visit_bool(v: bool) => de::Unexpected::Bool(v);
        visit_i64(v: i64) => de::Unexpected::Signed(v);
        visit_u64(v: u64) => de::Unexpected::Unsigned(v);
        visit_f64(v: f64) => de::Unexpected::Float(v);
        visit_str(v: &str) => de::Unexpected::Str(v);
        visit_unit() => de::Unexpected::Unit;
    }
}

/// The value of `"inputs"`: a non-empty list of examples.
struct Batch<'c, 'a>(&'c mut Ctx<'a>);

impl<'de> DeserializeSeed<'de> for Batch<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Batch<'_, '_> {
    fn other<E: de::Error>(self, what: de::Unexpected<'_>) -> Result<(), E> {
        let message = format!("inputs: expected a list of examples, found {}", found(&what));
        Err(self.0.fail(message))
    }
}

impl<'de> Visitor<'de> for Batch<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of examples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.0;
        let numel = ctx.shape.iter().product::<i64>() as usize;
        let guess = seq.size_hint().unwrap_or(1).min(1 << 16) * numel;
        if ctx.integer { ctx.out.ints.reserve(guess) } else { ctx.out.floats.reserve(guess) }
        ctx.path.push(0);
        while seq.next_element_seed(Level { ctx: &mut *ctx, depth: 0 })?.is_some() {
            *ctx.path.last_mut().expect("pushed") += 1;
        }
        ctx.path.pop();
        ctx.out.examples = if ctx.integer { ctx.out.ints.len() } else { ctx.out.floats.len() } / numel.max(1);
        if ctx.out.examples == 0 && numel > 0 {
            return Err(ctx.fail("inputs: expected at least one example, found an empty list".into()));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other(de::Unexpected::Map)
    }

    refuse_others! {
        visit_bool(v: bool) => de::Unexpected::Bool(v);
        visit_i64(v: i64) => de::Unexpected::Signed(v);
        visit_u64(v: u64) => de::Unexpected::Unsigned(v);
        visit_f64(v: f64) => de::Unexpected::Float(v);
        visit_str(v: &str) => de::Unexpected::Str(v);
        visit_unit() => de::Unexpected::Unit;
    }
}

/// One level of an example: a list of `shape[depth]` items, or a number past the last level.
struct Level<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Level<'_, '_> {
    fn expected(&self) -> String {
        match self.ctx.shape.get(self.depth) {
            Some(size) => format!("a list of {size} (an example has shape [{}])", self.ctx.example()),
            None => "a number".into(),
        }
    }

    fn other<E: de::Error>(self, what: de::Unexpected<'_>) -> Result<(), E> {
        let message = format!("{}: expected {}, found {}", self.ctx.at(), self.expected(), found(&what));
        Err(self.ctx.fail(message))
    }

    fn number<E: de::Error>(self, float: f64, int: Option<i64>) -> Result<(), E> {
        if self.depth < self.ctx.shape.len() {
            return self.other(match int {
                Some(i) => de::Unexpected::Signed(i),
                None => de::Unexpected::Float(float),
            });
        }
        if !self.ctx.integer {
            self.ctx.out.floats.push(float as f32);
            return Ok(());
        }
        match int {
            Some(i) => {
                self.ctx.out.ints.push(i);
                Ok(())
            }
            None => {
                let message = format!("{}: expected an integer (the model takes token ids), found {float}", self.ctx.at());
                Err(self.ctx.fail(message))
            }
        }
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list or a number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v, None)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64, Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64, i64::try_from(v).ok())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(&size) = self.ctx.shape.get(self.depth) else {
            return self.other(de::Unexpected::Seq);
        };
        let (ctx, depth) = (self.ctx, self.depth);
        ctx.path.push(0);
        let mut count = 0i64;
        loop {
            if count == size {
                // One more item would be too many: is there one?
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    ctx.path.pop();
                    let message = format!("{}: expected a list of {size} (an example has shape [{}]), found a longer list", ctx.at(), ctx.example());
                    return Err(ctx.fail(message));
                }
                break;
            }
            if seq.next_element_seed(Level { ctx: &mut *ctx, depth: depth + 1 })?.is_none() {
                break;
            }
            count += 1;
            *ctx.path.last_mut().expect("pushed") += 1;
        }
        ctx.path.pop();
        if count != size {
            let message = format!("{}: expected a list of {size} (an example has shape [{}]), found a list of {count}", ctx.at(), ctx.example());
            return Err(ctx.fail(message));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other(de::Unexpected::Map)
    }

    refuse_others! {
        visit_bool(v: bool) => de::Unexpected::Bool(v);
        visit_str(v: &str) => de::Unexpected::Str(v);
        visit_unit() => de::Unexpected::Unit;
    }
}
