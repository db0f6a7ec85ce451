//! An on-disk cache of paragraph embeddings, so retraining and re-evaluating skip the encoder.
//!
//! One file per encoder configuration (weights checksum, dtype, token limit, prefix), under
//! `$STANCER_HOME/embeddings/`. The file is a header and a sequence of fixed-size records:
//! the sha256 of the text, its token and window counts, its vector, and a checksum of the record.
//! Records are only ever appended, in one write per batch and synced; on opening, reading stops
//! at the first short or damaged record and the file is cut back to the last good one, so an
//! interrupted run loses at most its unsynced records and never yields a corrupt entry.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::encode::embed::{Embedder, Embedding};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"STEMB001";

/// The folder every cache file lives in.
pub fn cache_folder() -> PathBuf {
    crate::encode::model::fetch::stancer_home().join("embeddings")
}

struct Entry {
    vector: Vec<f32>,
    tokens: usize,
    windows: usize,
}

pub struct EmbeddingCache {
    path: PathBuf,
    dimension: usize,
    /// Records read from disk, and added by this process.
    entries: HashMap<[u8; 32], Entry>,
    pub hits: usize,
    pub misses: usize,
}

impl EmbeddingCache {
    /// Opens (or creates) the cache file for an encoder configuration, identified by `key`
    /// (for example the weights' sha256, the dtype and the token limit).
    pub fn open(key: &str, dimension: usize) -> Result<Self> {
        let folder = cache_folder();
        std::fs::create_dir_all(&folder).map_err(|e| Error::write(&folder, e))?;
        let name = crate::encode::model::fetch::sha256_bytes(key.as_bytes())[..32].to_string();
        Self::open_file(&folder.join(format!("{name}.emb")), dimension)
    }

    pub fn open_file(path: &Path, dimension: usize) -> Result<Self> {
        let mut cache = Self {
            path: path.to_path_buf(),
            dimension,
            entries: HashMap::new(),
            hits: 0,
            misses: 0,
        };
        if !path.exists() {
            let mut file = File::create(path).map_err(|e| Error::write(path, e))?;
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&(dimension as u32).to_le_bytes());
            file.write_all(&header).map_err(|e| Error::write(path, e))?;
            file.sync_all().map_err(|e| Error::write(path, e))?;
            return Ok(cache);
        }
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::read(path, e))?;
        let header_ok = bytes.len() >= 12
            && &bytes[..8] == MAGIC
            && u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize == dimension;
        if !header_ok {
            // Not ours, or another dimension: start afresh rather than misread it.
            std::fs::remove_file(path).map_err(|e| Error::write(path, e))?;
            return Self::open_file(path, dimension);
        }
        let size = cache.record_size();
        let mut offset = 12;
        while offset + size <= bytes.len() {
            let record = &bytes[offset..offset + size];
            let (body, check) = record.split_at(size - 8);
            if Sha256::digest(body)[..8] != *check {
                break;
            }
            let key: [u8; 32] = body[..32].try_into().expect("32 bytes");
            let tokens = u32::from_le_bytes(body[32..36].try_into().expect("4 bytes")) as usize;
            let windows = u32::from_le_bytes(body[36..40].try_into().expect("4 bytes")) as usize;
            let vector = body[40..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            cache.entries.insert(
                key,
                Entry {
                    vector,
                    tokens,
                    windows,
                },
            );
            offset += size;
        }
        if offset < bytes.len() {
            // A torn or damaged tail from an interrupted run: cut it off.
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::write(path, e))?;
            file.set_len(offset as u64)
                .map_err(|e| Error::write(path, e))?;
        }
        Ok(cache)
    }

    fn record_size(&self) -> usize {
        32 + 4 + 4 + 4 * self.dimension + 8
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Embeds passages, reading what the cache has and encoding (then storing) the rest.
    pub fn embed_passages(
        &mut self,
        embedder: &Embedder,
        texts: &[&str],
    ) -> Result<Vec<Embedding>> {
        let keys: Vec<[u8; 32]> = texts
            .iter()
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect();
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if !self.entries.contains_key(key) && seen.insert(*key) {
                missing.push(i);
            }
        }
        self.hits += texts.len() - missing.len();
        self.misses += missing.len();
        for chunk in missing.chunks(1024) {
            let chunk_texts: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let embeddings = embedder.embed_passages(&chunk_texts)?;
            let mut buffer = Vec::with_capacity(chunk.len() * self.record_size());
            for (&i, embedding) in chunk.iter().zip(embeddings) {
                let start = buffer.len();
                buffer.extend_from_slice(&keys[i]);
                buffer.extend_from_slice(&(embedding.tokens as u32).to_le_bytes());
                buffer.extend_from_slice(&(embedding.windows as u32).to_le_bytes());
                for v in &embedding.vector {
                    buffer.extend_from_slice(&v.to_le_bytes());
                }
                let check = Sha256::digest(&buffer[start..]);
                buffer.extend_from_slice(&check[..8]);
                self.entries.insert(
                    keys[i],
                    Entry {
                        vector: embedding.vector,
                        tokens: embedding.tokens,
                        windows: embedding.windows,
                    },
                );
            }
            let mut file = OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::write(&self.path, e))?;
            file.write_all(&buffer)
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::write(&self.path, e))?;
        }
        Ok(keys
            .iter()
            .map(|key| {
                let entry = &self.entries[key];
                Embedding {
                    vector: entry.vector.clone(),
                    tokens: entry.tokens,
                    windows: entry.windows,
                }
            })
            .collect())
    }
}

/// The cache key of an embedder: what changes its vectors.
pub fn embedder_key(weights_sha256: &str, embedder: &Embedder) -> String {
    format!(
        "{weights_sha256}|{}|max_tokens={}|{}",
        embedder.device_label(),
        embedder.max_tokens(),
        embedder.settings_label()
    )
}

/// Deletes every cache file; returns how many bytes were freed.
pub fn clear() -> Result<u64> {
    let folder = cache_folder();
    let mut freed = 0;
    if let Ok(entries) = std::fs::read_dir(&folder) {
        for entry in entries.flatten() {
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        std::fs::remove_dir_all(&folder).map_err(|e| Error::write(&folder, e))?;
    }
    Ok(freed)
}

/// (files, bytes) in the cache folder.
pub fn usage() -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    if let Ok(entries) = std::fs::read_dir(cache_folder()) {
        for entry in entries.flatten() {
            files += 1;
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (files, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(path: &Path, records: &[([u8; 32], Vec<f32>)]) {
        let mut cache = EmbeddingCache::open_file(path, 2).unwrap();
        let size = cache.record_size();
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        for (key, vector) in records {
            let mut record = key.to_vec();
            record.extend_from_slice(&3u32.to_le_bytes());
            record.extend_from_slice(&1u32.to_le_bytes());
            for v in vector {
                record.extend_from_slice(&v.to_le_bytes());
            }
            let check = Sha256::digest(&record);
            record.extend_from_slice(&check[..8]);
            assert_eq!(record.len(), size);
            file.write_all(&record).unwrap();
        }
        cache.entries.clear();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_good_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.emb");
        write_records(
            &path,
            &[([1; 32], vec![0.5, -1.0]), ([2; 32], vec![2.0, 3.0])],
        );
        let full = std::fs::metadata(&path).unwrap().len();
        // Interrupted in the middle of a third record.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9; 20]).unwrap();
        drop(file);
        let cache = EmbeddingCache::open_file(&path, 2).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.entries[&[2; 32]].vector, vec![2.0, 3.0]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full);
    }

    #[test]
    fn a_damaged_record_ends_the_good_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.emb");
        write_records(
            &path,
            &[([1; 32], vec![0.5, -1.0]), ([2; 32], vec![2.0, 3.0])],
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let cache = EmbeddingCache::open_file(&path, 2).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.entries.contains_key(&[1; 32]));
    }

    #[test]
    fn another_dimension_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.emb");
        write_records(&path, &[([1; 32], vec![0.5, -1.0])]);
        let cache = EmbeddingCache::open_file(&path, 3).unwrap();
        assert!(cache.is_empty());
    }
}
