//! A source reading the lines of files: one split per file, the position a byte
//! offset, so a restored job goes on from the exact line it had reached.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::source::{ReadStatus, SourceError, SplitId, SplitSource};

/// Why a file source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The folder could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The folder holds no files.
    #[error("{0} holds no files to read")]
    Empty(PathBuf),
}

/// The lines of every file in a folder (not its subfolders), each file a split, in
/// name order. The files must not change while the job runs.
#[derive(Debug)]
pub struct FileSource {
    files: Vec<PathBuf>,
}

impl FileSource {
    /// A source over the files in `dir`.
    pub fn new(dir: &Path) -> Result<Self, FileSourceError> {
        let list_error = |source| FileSourceError::List {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_error)? {
            let path = entry.map_err(list_error)?.path();
            if path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(FileSourceError::Empty(dir.to_path_buf()));
        }
        files.sort();
        Ok(Self { files })
    }

    fn read_lines(
        &self,
        split: u32,
        offset: &mut u64,
        max: usize,
        out: &mut Vec<String>,
    ) -> std::io::Result<bool> {
        let mut file = File::open(&self.files[split as usize])?;
        file.seek(SeekFrom::Start(*offset))?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        for _ in 0..max {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                return Ok(true);
            }
            *offset += read as u64;
            out.push(line.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(false)
    }
}

impl SplitSource for FileSource {
    type Record = String;
    type Position = u64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        Ok((0..self.files.len() as u32)
            .map(|file| SplitId::new("", file))
            .collect())
    }

    fn start(&mut self, _split: &SplitId, _discovered_later: bool) -> Result<u64, SourceError> {
        Ok(0)
    }

    fn read(
        &mut self,
        split: &SplitId,
        position: &mut u64,
        max: usize,
        out: &mut Vec<String>,
    ) -> Result<ReadStatus, SourceError> {
        Ok(match self.read_lines(split.index, position, max, out) {
            Ok(true) => ReadStatus::Ended,
            Ok(false) => ReadStatus::More,
            Err(error) => {
                // A file that cannot be read now is retried; the error is logged,
                // never turned into lost lines.
                let file = &self.files[split.index as usize];
                tracing::warn!(file = %file.display(), %error, "cannot read");
                ReadStatus::Idle
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_resume_from_their_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "three\nfour").unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").unwrap();
        let mut source = FileSource::new(dir.path()).unwrap();
        let splits = source.discover().unwrap();
        assert_eq!(splits.len(), 2);
        let (mut position, mut lines) = (0, Vec::new());
        assert_eq!(
            source.read(&splits[0], &mut position, 1, &mut lines),
            Ok(ReadStatus::More)
        );
        assert_eq!(
            source.read(&splits[0], &mut position, 5, &mut lines),
            Ok(ReadStatus::Ended)
        );
        assert_eq!(lines, ["one", "two"]);
        let (mut position, mut lines) = (0, Vec::new());
        for expected in [ReadStatus::More, ReadStatus::More, ReadStatus::Ended] {
            assert_eq!(
                source.read(&splits[1], &mut position, 1, &mut lines),
                Ok(expected)
            );
        }
        assert_eq!(lines, ["three", "four"]);
        assert!(matches!(
            FileSource::new(&dir.path().join("missing")),
            Err(FileSourceError::List { .. })
        ));
    }
}
