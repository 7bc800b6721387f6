//! The crash journal: pairs Slack issued, on disk until their credentials Secret holds them.
//!
//! A refresh token works once. Between Slack's answer and the credentials Secret write, the new
//! pair exists only in this process; when the API server stalls, that window lasts as long as
//! the stall, and a container killed inside it (OOM, liveness probe, node drain) would take the
//! only copy with it. So the pair is written here first — before any API call — and removed only
//! once the Secret holds it. At start-up every entry is replayed (see `crate::replay`).
//!
//! One file per credentials Secret, named by a hash of `namespace/name`. Each write goes to a
//! temporary file (mode 0600), is fsync'd, renamed over the old one, and the directory is
//! fsync'd, so a crash leaves either the old entry or the new one, whole. A file that is
//! nevertheless damaged (a disk error, a hand edit) fails its length or checksum, is moved aside
//! as `*.corrupt` and reported; it never stops the process. The files hold live tokens: they are
//! as secret as the Secret, and nothing of their content is ever logged.

use crate::{resource::Identity, slack::Issued};
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::Duration,
};

const MAGIC: &[u8] = b"slack-token-operator journal 1\n";
const SUFFIX: &str = "pair";
/// Larger than any entry can be; a length field beyond it is damage, not an entry.
const MAX_PAYLOAD: u64 = 1 << 20;

/// A pair Slack issued for credentials Secret `namespace/name`, not yet saved there.
#[derive(Debug, Clone)]
pub struct Entry {
    pub namespace: String,
    pub name: String,
    /// Fingerprint of the refresh (or long-lived) token this pair replaces: the pair is only
    /// saved into a Secret that still holds that one.
    pub replaces: String,
    pub issued: Issued,
    /// When Slack answered; the expiry counts from here.
    pub issued_at: Timestamp,
    /// The SlackToken that rotated, for the Secret's label.
    pub slacktoken: String,
    /// The `slack.rotator.dev/rotate` value the rotation satisfied, saved with the pair.
    pub rotate_request: Option<String>,
}

/// A short one-way fingerprint of a token, to tell tokens apart without keeping them.
pub fn fingerprint(token: &SecretString) -> String {
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A journal entry that could not be read, moved aside.
#[derive(Debug, PartialEq, Eq)]
pub struct Damaged {
    pub path: PathBuf,
    pub why: String,
}

#[derive(Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the journal directory and checks it can be written.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let probe = dir.join(".probe");
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        Ok(Self { dir: dir.to_owned() })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, namespace: &str, name: &str) -> PathBuf {
        let key = Sha256::digest(format!("{namespace}/{name}").as_bytes());
        let hex: String = key.iter().take(12).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.{SUFFIX}"))
    }

    /// Writes `entry` durably: when this returns, a crash of the process or the machine keeps it.
    pub(crate) fn write(&self, entry: &Entry) -> io::Result<()> {
        let path = self.path(&entry.namespace, &entry.name);
        let tmp = path.with_extension("tmp");
        let payload = serde_json::to_vec(&Stored::from(entry)).map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 40 + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&Sha256::digest(&payload));
        bytes.extend_from_slice(&payload);
        let mut file = create_private(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    /// Removes the entry of credentials Secret `namespace/name` (done: the Secret holds it).
    pub(crate) fn remove(&self, namespace: &str, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(namespace, name)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every entry in the journal. Damaged ones are renamed `*.corrupt` (kept for a person to
    /// look at, never read again) and returned separately; leftover temporary files of a write
    /// that never finished are removed (the entry they were to replace is still there).
    pub(crate) fn read_all(&self) -> io::Result<(Vec<Entry>, Vec<Damaged>)> {
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        let mut paths: Vec<PathBuf> =
            fs::read_dir(&self.dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => {
                    let _ = fs::remove_file(&path);
                }
                Some(SUFFIX) => match read_entry(&path) {
                    Ok(entry) => entries.push(entry),
                    Err(why) => {
                        let aside = path.with_extension("corrupt");
                        let _ = fs::rename(&path, &aside);
                        damaged.push(Damaged { path: aside, why });
                    }
                },
                _ => {}
            }
        }
        Ok((entries, damaged))
    }
}

fn read_entry(path: &Path) -> Result<Entry, String> {
    let bytes = fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let rest = bytes.strip_prefix(MAGIC).ok_or("not a journal entry (bad header)")?;
    if rest.len() < 40 {
        return Err(format!("truncated: {} bytes after the header", rest.len()));
    }
    let (length, rest) = rest.split_at(8);
    let length = u64::from_be_bytes(length.try_into().map_err(|_| "bad length")?);
    let (checksum, payload) = rest.split_at(32);
    if length > MAX_PAYLOAD || payload.len() as u64 != length {
        return Err(format!("truncated: {} of {length} payload bytes", payload.len()));
    }
    if Sha256::digest(payload).as_slice() != checksum {
        return Err("checksum mismatch".into());
    }
    let stored: Stored = serde_json::from_slice(payload)
        .map_err(|e| format!("unreadable payload at {}:{}", e.line(), e.column()))?;
    Ok(stored.into())
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The on-disk form. Tokens are written as plain strings: the file is the one place (besides
/// the Secret) they must be kept.
#[derive(Serialize, Deserialize)]
struct Stored {
    namespace: String,
    name: String,
    replaces: String,
    access_token: String,
    refresh_token: String,
    expires_in_secs: Option<u64>,
    issued_at: Timestamp,
    identity: Identity,
    slacktoken: String,
    rotate_request: Option<String>,
}

impl From<&Entry> for Stored {
    fn from(e: &Entry) -> Self {
        Stored {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            replaces: e.replaces.clone(),
            access_token: e.issued.access_token.expose_secret().to_owned(),
            refresh_token: e.issued.refresh_token.expose_secret().to_owned(),
            expires_in_secs: e.issued.expires_in.map(|d| d.as_secs()),
            issued_at: e.issued_at,
            identity: e.issued.identity.clone(),
            slacktoken: e.slacktoken.clone(),
            rotate_request: e.rotate_request.clone(),
        }
    }
}

impl From<Stored> for Entry {
    fn from(s: Stored) -> Self {
        Entry {
            namespace: s.namespace,
            name: s.name,
            replaces: s.replaces,
            issued: Issued {
                access_token: SecretString::from(s.access_token),
                refresh_token: SecretString::from(s.refresh_token),
                expires_in: s.expires_in_secs.map(Duration::from_secs),
                identity: s.identity,
            },
            issued_at: s.issued_at,
            slacktoken: s.slacktoken,
            rotate_request: s.rotate_request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, refresh: &str) -> Entry {
        Entry {
            namespace: "team-a".into(),
            name: name.into(),
            replaces: fingerprint(&SecretString::from("xoxe-1-old")),
            issued: Issued {
                access_token: SecretString::from("xoxe.xoxb-1-new"),
                refresh_token: SecretString::from(refresh),
                expires_in: Some(Duration::from_secs(43200)),
                identity: Identity { team_id: Some("T1".into()), ..Default::default() },
            },
            issued_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            slacktoken: "bot".into(),
            rotate_request: Some("7".into()),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_entry_survives_until_removed_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("bot-creds", "xoxe-1-new")).unwrap();
        journal.write(&entry("other-creds", "xoxe-1-other")).unwrap();
        // A second pair for the same Secret replaces the first: one entry per Secret.
        journal.write(&entry("bot-creds", "xoxe-1-newer")).unwrap();
        let (entries, damaged) = Journal::open(dir.path()).unwrap().read_all().unwrap();
        assert!(damaged.is_empty());
        assert_eq!(entries.len(), 2);
        let bot = entries.iter().find(|e| e.name == "bot-creds").unwrap();
        assert_eq!(bot.issued.refresh_token.expose_secret(), "xoxe-1-newer");
        assert_eq!(bot.issued.expires_in, Some(Duration::from_secs(43200)));
        assert_eq!(bot.replaces, fingerprint(&SecretString::from("xoxe-1-old")));
        assert_eq!(bot.rotate_request.as_deref(), Some("7"));
        journal.remove("team-a", "bot-creds").unwrap();
        journal.remove("team-a", "bot-creds").unwrap(); // removing twice is fine
        assert_eq!(journal.read_all().unwrap().0.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn entries_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("bot-creds", "xoxe-1-new")).unwrap();
        let path = journal.path("team-a", "bot-creds");
        assert_eq!(fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn damaged_entries_are_set_aside_and_reported_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("good", "xoxe-1-good")).unwrap();
        let whole = {
            journal.write(&entry("victim", "xoxe-1-victim")).unwrap();
            fs::read(journal.path("team-a", "victim")).unwrap()
        };
        let mut flipped = whole.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("cut in the payload", whole[..whole.len() - 10].to_vec(), "truncated"),
            ("cut in the header", whole[..MAGIC.len() + 5].to_vec(), "truncated"),
            ("empty", Vec::new(), "bad header"),
            ("a bit flipped", flipped, "checksum mismatch"),
            ("not ours", b"hello".to_vec(), "bad header"),
        ];
        for (case, bytes, why) in cases {
            fs::write(journal.path("team-a", "victim"), &bytes).unwrap();
            let (entries, damaged) = journal.read_all().unwrap();
            assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["good"], "{case}");
            assert_eq!(damaged.len(), 1, "{case}");
            assert!(damaged[0].why.contains(why), "{case}: {}", damaged[0].why);
            assert!(damaged[0].path.extension().is_some_and(|e| e == "corrupt"), "{case}: set aside");
            fs::remove_file(&damaged[0].path).unwrap();
        }
    }

    #[test]
    fn a_write_cut_short_leaves_the_previous_entry() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("bot-creds", "xoxe-1-first")).unwrap();
        // A crash between creating the temporary file and the rename.
        fs::write(journal.path("team-a", "bot-creds").with_extension("tmp"), b"half").unwrap();
        let (entries, damaged) = journal.read_all().unwrap();
        assert!(damaged.is_empty());
        assert_eq!(entries[0].issued.refresh_token.expose_secret(), "xoxe-1-first");
        assert_eq!(
            files(dir.path()),
            vec![journal.path("team-a", "bot-creds").file_name().unwrap().to_string_lossy()]
        );
    }

    #[test]
    fn nothing_of_a_token_shows_in_debug_output_or_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let e = entry("bot-creds", "xoxe-1-SECRETPART");
        journal.write(&e).unwrap();
        assert!(!format!("{e:?}").contains("SECRETPART"));
        assert!(files(dir.path()).iter().all(|f| !f.contains("SECRETPART") && !f.contains("bot-creds")));
        assert_ne!(fingerprint(&SecretString::from("a")), fingerprint(&SecretString::from("b")));
    }
}
