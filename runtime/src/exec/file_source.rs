//! A source reading the lines of files: one split per file, named by the file, the
//! position a byte offset, so a restored job goes on from the exact line it had
//! reached, and a file added between runs is read from its start.

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

/// The lines of every file in a folder (not its subfolders), each file a split
/// named by the file's name. Files must be UTF-8; they must not change while the
/// job runs, but files may be added between runs.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    /// The files' names, in name order.
    names: Vec<String>,
}

impl FileSource {
    /// A source over the files in `dir`.
    pub fn new(dir: &Path) -> Result<Self, FileSourceError> {
        let list_error = |source| FileSourceError::List {
            path: dir.to_path_buf(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            if entry.path().is_file() {
                // A name that is not UTF-8 cannot name a split in a checkpoint.
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if names.is_empty() {
            return Err(FileSourceError::Empty(dir.to_path_buf()));
        }
        names.sort();
        Ok(Self {
            dir: dir.to_path_buf(),
            names,
        })
    }

    /// Reads up to `max` lines of `file` from `offset`; whether the file ended.
    fn read_lines(
        &self,
        file: &Path,
        offset: &mut u64,
        max: usize,
        out: &mut Vec<String>,
    ) -> Result<bool, ReadError> {
        let mut opened = File::open(file)?;
        opened.seek(SeekFrom::Start(*offset))?;
        let mut reader = BufReader::new(opened);
        let mut line = Vec::new();
        for _ in 0..max {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(true);
            }
            let text = std::str::from_utf8(&line).map_err(|_| ReadError::NotUtf8)?;
            out.push(text.trim_end_matches(['\n', '\r']).to_owned());
            *offset += read as u64;
        }
        Ok(false)
    }
}

/// Why lines could not be read.
enum ReadError {
    /// The file could not be read now (retried).
    Io(std::io::Error),
    /// The line at the offset is not UTF-8 (the job fails: it would never be).
    NotUtf8,
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        ReadError::Io(error)
    }
}

impl SplitSource for FileSource {
    type Record = String;
    type Position = u64;

    fn discover(&mut self) -> Result<Vec<SplitId>, SourceError> {
        Ok(self
            .names
            .iter()
            .map(|name| SplitId::new(name, 0))
            .collect())
    }

    /// Checkpoints of format 1 named a file by its index in the sorted listing
    /// (group ""); the files must be the same as then.
    fn restored_split(&self, split: SplitId) -> SplitId {
        match self.names.get(split.index as usize) {
            Some(name) if split.group.is_empty() => SplitId::new(name, 0),
            _ => split,
        }
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
        let file = self.dir.join(&split.group);
        match self.read_lines(&file, position, max, out) {
            Ok(true) => Ok(ReadStatus::Ended),
            Ok(false) => Ok(ReadStatus::More),
            Err(ReadError::Io(error)) => {
                // A file that cannot be read now is retried; the error is logged,
                // never turned into lost lines.
                tracing::warn!(file = %file.display(), %error, "cannot read");
                Ok(ReadStatus::Idle)
            }
            Err(ReadError::NotUtf8) => Err(SourceError(format!(
                "{}: the line at byte {position} is not UTF-8; fix or remove it (the job goes on from this line when restarted)",
                file.display()
            ))),
        }
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

    #[test]
    fn splits_named_by_index_before_are_mapped_to_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "x\n").unwrap();
        std::fs::write(dir.path().join("a.txt"), "y\n").unwrap();
        let source = FileSource::new(dir.path()).unwrap();
        assert_eq!(
            source.restored_split(SplitId::new("", 1)),
            SplitId::new("b.txt", 0)
        );
        let named = SplitId::new("a.txt", 0);
        assert_eq!(source.restored_split(named.clone()), named);
    }

    /// Issue 14, point 11: a line that is not UTF-8 fails the job, naming the file
    /// and the line's byte offset, instead of being retried forever.
    #[test]
    fn a_line_that_is_not_utf8_is_an_error_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"good\nbad \xff\xfe\nlater\n").unwrap();
        let mut source = FileSource::new(dir.path()).unwrap();
        let splits = source.discover().unwrap();
        let (mut position, mut lines) = (0, Vec::new());
        let error = source
            .read(&splits[0], &mut position, 10, &mut lines)
            .expect_err("invalid UTF-8 is an error");
        assert_eq!(lines, ["good"]);
        assert_eq!(position, 5, "the position stays at the bad line");
        assert!(error.0.contains("a.txt"), "{error}");
        assert!(error.0.contains("byte 5"), "{error}");
        assert!(error.0.contains("UTF-8"), "{error}");
    }
}
