//! A checkpoint on disk (or in memory) before it becomes a model: resolved
//! configuration, tensors by Hugging Face name, and the rotary embedding that
//! matches the file's q/k layout. Running a model and converting one (`herd
//! quantize`) both start here, so there is one place that knows formats.

use std::path::{Path, PathBuf};

use herd_gguf::{GgufFile, GgufWriter};

use crate::config::{Config, GenerationConfig};
use crate::error::{ModelError, Result};
use crate::export::{add_model_tensors, model_metadata, FileType};
use crate::gguf::{gguf_config, gguf_rope, GgufWeights};
use crate::model::Llama;
use crate::rope::{Rope, RopeLayout};
use crate::weights::{TensorSource, Weight, WeightFiles};

/// The tensors of a checkpoint, in whichever format they are stored.
pub enum Tensors {
    /// Hugging Face safetensors (one file or shards).
    Safetensors(WeightFiles),
    /// A llama.cpp GGUF file.
    Gguf(GgufWeights),
}

impl TensorSource for Tensors {
    fn get(&self, name: &str, expected: &[usize]) -> Result<Weight> {
        match self {
            Tensors::Safetensors(t) => TensorSource::get(t, name, expected),
            Tensors::Gguf(t) => t.get(name, expected),
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Tensors::Safetensors(t) => t.has(name),
            Tensors::Gguf(t) => t.has(name),
        }
    }

    fn total_bytes(&self) -> u64 {
        match self {
            Tensors::Safetensors(t) => TensorSource::total_bytes(t),
            Tensors::Gguf(t) => t.total_bytes(),
        }
    }

    fn rope_layout(&self) -> RopeLayout {
        match self {
            Tensors::Safetensors(t) => t.rope_layout(),
            Tensors::Gguf(t) => t.rope_layout(),
        }
    }
}

/// An opened checkpoint.
pub struct Checkpoint {
    /// The resolved configuration.
    pub config: Config,
    /// Sampling defaults (empty for GGUF files).
    pub generation: GenerationConfig,
    /// The weights.
    pub tensors: Tensors,
    /// Rotary embedding matching the weights' layout and scaling.
    pub rope: Rope,
    /// Where it came from.
    pub path: PathBuf,
}

impl Checkpoint {
    /// Opens a Hugging Face directory or a GGUF file.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        if path.is_dir() {
            Checkpoint::open_dir(path)
        } else if path.is_file() {
            Checkpoint::open_gguf(path)
        } else {
            Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                hint: "; expected a Hugging Face model directory or a .gguf file".into(),
            })
        }
    }

    /// Opens a Hugging Face Llama directory.
    pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
        let config = Config::from_file(&dir.join("config.json"))?;
        let generation = GenerationConfig::from_file(&dir.join("generation_config.json"))?;
        let tensors = Tensors::Safetensors(WeightFiles::open_dir(dir)?);
        let rope = Rope::new(&config);
        Ok(Checkpoint {
            config,
            generation,
            tensors,
            rope,
            path: dir.to_path_buf(),
        })
    }

    /// Opens a `llama`-architecture GGUF file.
    pub fn open_gguf(path: &Path) -> Result<Checkpoint> {
        // The parser's errors already name the file.
        let weights = GgufWeights::new(GgufFile::open(path)?, path);
        let config = gguf_config(&weights)?;
        let rope = gguf_rope(&weights, &config)?;
        Ok(Checkpoint {
            config,
            generation: GenerationConfig::default(),
            tensors: Tensors::Gguf(weights),
            rope,
            path: path.to_path_buf(),
        })
    }

    /// A checkpoint held in memory (the model embedded in the `herd` binary);
    /// `name` stands in for the directory in errors.
    pub fn from_memory(
        config_json: &str,
        generation_json: Option<&str>,
        safetensors: &[u8],
        name: &str,
    ) -> Result<Checkpoint> {
        let dir = Path::new(name);
        let config = Config::from_json(config_json, &dir.join("config.json"))?;
        let generation = match generation_json {
            Some(text) => GenerationConfig::from_json(text, &dir.join("generation_config.json"))?,
            None => GenerationConfig::default(),
        };
        let files = WeightFiles::from_bytes(
            safetensors,
            &dir.join("model.safetensors").display().to_string(),
        )?;
        let rope = Rope::new(&config);
        Ok(Checkpoint {
            config,
            generation,
            tensors: Tensors::Safetensors(files),
            rope,
            path: dir.to_path_buf(),
        })
    }

    /// The GGUF file, when the checkpoint is one (its tokenizer metadata).
    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.tensors {
            Tensors::Gguf(w) => Some(w.file()),
            Tensors::Safetensors(_) => None,
        }
    }

    /// The same model with its weights converted to `file_type` in memory,
    /// exactly as `herd quantize` would write them (same per-tensor type
    /// rules, same quantizers): the GGUF file is built in a buffer and read
    /// back, so a model quantized at load computes what the written file
    /// would. The original weights are released when `self` is dropped.
    pub fn quantize(self, file_type: FileType) -> Result<Checkpoint> {
        let name = self.path.display().to_string();
        let mut writer = GgufWriter::with_metadata(model_metadata(&self.config, &name, file_type));
        add_model_tensors(
            &mut writer,
            &self.config,
            &self.tensors,
            &self.rope,
            file_type,
        )?;
        let mut bytes = Vec::new();
        writer.write(&mut bytes)?;
        let weights = GgufWeights::new(GgufFile::from_bytes(&bytes)?, &self.path);
        drop(bytes);
        let rope = gguf_rope(&weights, &self.config)?;
        Ok(Checkpoint {
            config: self.config,
            generation: self.generation,
            tensors: Tensors::Gguf(weights),
            rope,
            path: self.path,
        })
    }

    /// Builds the runnable model (weights stay shared with the checkpoint's files).
    pub fn into_model(self) -> Result<Llama> {
        Llama::from_weights(self.config, self.generation, &self.tensors, self.rope)
    }
}

impl Llama {
    /// Loads a Hugging Face Llama directory or a GGUF file.
    pub fn load(path: &Path) -> Result<Llama> {
        Checkpoint::open(path)?.into_model()
    }

    /// Builds a model whose files are held in memory; see [`Checkpoint::from_memory`].
    pub fn from_memory(
        config_json: &str,
        generation_json: Option<&str>,
        safetensors: &[u8],
        name: &str,
    ) -> Result<Llama> {
        Checkpoint::from_memory(config_json, generation_json, safetensors, name)?.into_model()
    }
}
