//! deploy/ as its reader uses it. The commands deploy/README.md shows are read out of
//! it and run: the systemd set-up into a scratch root, the key commands, `check-config`
//! on the production example with its files in place, the unit's `ExecStart`. The
//! container image's configuration is started the way deploy/Containerfile starts it.
//! Commands that need what a test machine lacks, or that would change the machine, are
//! skipped by program name ([`SKIPPED`]); a program in neither list fails the test, so
//! that a new kind of command is run or skipped on purpose.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Programs the documents show that this test does not run, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "docker",
        "needs a container engine and images from a registry",
    ),
    (
        "podman",
        "needs a container engine and images from a registry",
    ),
    ("systemctl", "needs systemd as the service manager"),
    ("journalctl", "needs systemd's journal"),
    (
        "systemd-run",
        "needs systemd as the service manager (the patgate command it wraps is run)",
    ),
    ("kubectl", "needs a Kubernetes cluster"),
    ("helm", "needs a Kubernetes cluster"),
    ("iptables", "would change this machine's firewall"),
    ("ip6tables", "would change this machine's firewall"),
    ("nft", "would change this machine's firewall"),
    ("useradd", "would add an account to this machine"),
    ("curl", "asks a running Deploy"),
    (
        "bash",
        "runs bench/rolling.sh, a benchmark of minutes that installs HAProxy",
    ),
];

/// Programs this test runs: `patgate` (`check-config` for real, every other command
/// through the binary's parser with `--help`, since it needs a database with tokens or
/// a running Deploy), `openssl` (the key commands), and `install`, into the scratch root
/// with its owner options dropped (the `patgate` account does not exist here).
const RUN: &[&str] = &["patgate", "openssl", "install"];

/// The folders the set-up lives in; the documents name them as absolute paths, and the
/// test maps them into its scratch root.
const SYSTEM_FOLDERS: &[&str] = &["/etc/patgate", "/var/lib/patgate"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

// ---------------------------------------------------------------- reading the documents

/// A fenced block of a Markdown file: its language and its text.
struct Block {
    lang: String,
    text: String,
}

/// The fenced blocks of a Markdown text, and the prose between them (a block ends a
/// paragraph).
fn split_markdown(markdown: &str) -> (Vec<Block>, String) {
    let mut blocks = Vec::new();
    let mut prose = String::new();
    let mut open: Option<(usize, Block)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence = trimmed.starts_with("```");
        match open.as_mut() {
            None if fence => {
                let lang = trimmed.trim_start_matches('`').trim().to_string();
                let text = String::new();
                open = Some((indent, Block { lang, text }));
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
            Some(_) if fence => {
                blocks.push(open.take().unwrap().1);
                prose.push('\n');
            }
            Some((indent, block)) => {
                let cut = line.len() - line.trim_start().len();
                block.text.push_str(&line[cut.min(*indent)..]);
                block.text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    (blocks, prose)
}

/// The inline code spans of some prose, each with the rest of its paragraph up to the
/// next span.
fn code_spans(prose: &str) -> Vec<(String, String)> {
    let mut spans = Vec::new();
    for paragraph in prose.split("\n\n") {
        let parts: Vec<&str> = paragraph.split('`').collect();
        assert!(parts.len() % 2 == 1, "unpaired backtick in: {paragraph}");
        for i in (1..parts.len()).step_by(2) {
            let span = parts[i].split_whitespace().collect::<Vec<_>>().join(" ");
            spans.push((span, parts.get(i + 1).unwrap_or(&"").to_string()));
        }
    }
    spans
}

/// Words of a command line; a `<placeholder with spaces>` stays one word, and the
/// quotes around a word are removed.
fn words(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_placeholder = false;
    for word in line.split_whitespace() {
        if in_placeholder {
            let last = out.last_mut().unwrap();
            last.push(' ');
            last.push_str(word);
        } else {
            out.push(word.trim_matches('"').to_string());
            in_placeholder = word.starts_with('<');
        }
        if word.ends_with('>') {
            in_placeholder = false;
        }
    }
    out
}

/// One command a document shows.
#[derive(Debug, Clone)]
struct Shown {
    words: Vec<String>,
    /// As written (continuations joined), for messages and for `sh -c`.
    line: String,
    /// Its comment (in a block) or the rest of its paragraph (inline).
    note: String,
}

impl Shown {
    fn new(line: &str, note: &str) -> Shown {
        Shown {
            words: words(line),
            line: line.trim().to_string(),
            note: note.to_string(),
        }
    }

    fn program(&self) -> &str {
        let first = self.words.first().map(String::as_str).unwrap_or_default();
        first.rsplit('/').next().unwrap_or(first)
    }
}

/// The commands of a shell block, in order. A shell function (`name() { … }`) stands for
/// the `patgate` command inside it, with the arguments its callers give in place of `"$@"`.
fn shell_commands(text: &str) -> Vec<Shown> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut commands = Vec::new();
    let mut functions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_function: Option<String> = None;
    for line in logical {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (command, note) = match trimmed.find(" #") {
            Some(at) => (&trimmed[..at], trimmed[at + 2..].trim()),
            None => (trimmed, ""),
        };
        if let Some(name) = command.strip_suffix("() {") {
            in_function = Some(name.trim().to_string());
            continue;
        }
        if let Some(name) = &in_function {
            if command == "}" {
                in_function = None;
            } else {
                let inner = words(command);
                if let Some(at) = inner
                    .iter()
                    .position(|w| w == "patgate" || w.ends_with("bin/patgate"))
                {
                    let prefix: Vec<String> =
                        inner[at..].iter().filter(|w| *w != "$@").cloned().collect();
                    functions.insert(name.clone(), prefix);
                }
                commands.push(Shown::new(command, note));
            }
            continue;
        }
        let mut shown = Shown::new(command, note);
        if let Some(prefix) = functions.get(&shown.words[0]) {
            let mut expanded = prefix.clone();
            expanded.extend(shown.words[1..].iter().cloned());
            shown.words = expanded;
        }
        commands.push(shown);
    }
    commands
}

/// Every command deploy/README.md shows: the shell blocks' commands and the inline code
/// spans that start with a program of [`RUN`] or [`SKIPPED`]. A `docker exec NAME
/// patgate …` also yields the `patgate …` it runs.
fn readme_commands(markdown: &str) -> Vec<Shown> {
    let (blocks, prose) = split_markdown(markdown);
    let mut commands = Vec::new();
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        commands.extend(shell_commands(&block.text));
    }
    let known =
        |program: &str| RUN.contains(&program) || SKIPPED.iter().any(|(p, _)| *p == program);
    for (span, rest) in code_spans(&prose) {
        let shown = Shown::new(&span, &rest);
        if shown.words.len() > 1 && known(shown.program()) {
            commands.push(shown);
        }
    }
    let inner: Vec<Shown> = commands
        .iter()
        .filter(|c| c.words.len() > 3 && c.words[0] == "docker" && c.words[1] == "exec")
        .map(|c| Shown {
            words: c.words[3..].to_vec(),
            ..c.clone()
        })
        .collect();
    commands.extend(inner);
    commands
}

/// The `Key=value` settings of one section of a systemd unit.
fn unit_section(unit: &str, section: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut inside = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
        } else if inside && !line.starts_with('#') {
            if let Some((key, value)) = line.split_once('=') {
                settings
                    .entry(key.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    settings
}

fn one<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match settings.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("deploy/patgate.service: expected one {key}=, found {other:?}"),
    }
}

fn yaml_text<'a>(yaml: &'a serde_yaml_ng::Value, path: &[&str]) -> &'a str {
    let mut node = yaml;
    for key in path {
        node = &node[*key];
    }
    node.as_str()
        .unwrap_or_else(|| panic!("{} is not text in the production example", path.join(".")))
}

// ---------------------------------------------------------------- running them

/// A scratch root standing in for `/` of the machine being set up.
struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        Root { _dir: dir, path }
    }

    /// Where an absolute path of the documents is in the scratch root.
    fn here(&self, path: &str) -> PathBuf {
        assert!(path.starts_with('/'), "{path} is not absolute");
        self.path.join(path.trim_start_matches('/'))
    }

    /// A command's argument with absolute paths (other than /dev/null) mapped.
    fn arg(&self, arg: &str) -> String {
        if arg.starts_with('/') && arg != "/dev/null" {
            self.here(arg).display().to_string()
        } else {
            arg.to_string()
        }
    }

    /// A file's text with the [`SYSTEM_FOLDERS`] mapped.
    fn text(&self, text: &str) -> String {
        SYSTEM_FOLDERS
            .iter()
            .fold(text.to_string(), |text, folder| {
                text.replace(
                    &format!("{folder}/"),
                    &format!("{}/", self.here(folder).display()),
                )
            })
    }
}

/// Runs a program; returns (exit code, stdout, stderr).
async fn run(
    program: &Path,
    args: &[String],
    dir: &Path,
    env: &[(String, String)],
) -> (i32, String, String) {
    run_for(Duration::from_secs(60), program, args, dir, env).await
}

/// [`run`], killed after `limit`.
async fn run_for(
    limit: Duration,
    program: &Path,
    args: &[String],
    dir: &Path,
    env: &[(String, String)],
) -> (i32, String, String) {
    let out = tokio::time::timeout(
        limit,
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{} {args:?} finished within {limit:?}", program.display()))
    .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sh(line: &str, dir: &Path) -> (i32, String, String) {
    run(Path::new("sh"), &["-c".into(), line.into()], dir, &[]).await
}

fn pair(key: &str, value: impl std::fmt::Display) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// The systemd set-up of deploy/README.md, made in a scratch root by its own commands.
struct Site {
    root: Root,
    /// The configuration file the unit's `ExecStart` names, in the scratch root.
    config: PathBuf,
    /// The unit's working directory, in the scratch root.
    workdir: PathBuf,
    /// The environment file the README shows, as the unit would read it.
    env: Vec<(String, String)>,
    /// The README's `check-config` commands, run for real.
    checks: Vec<Shown>,
    /// Its other patgate commands, given to the binary's parser.
    parsed: Vec<Shown>,
    /// What was skipped, with the rule's reason.
    skipped: Vec<(Shown, &'static str)>,
    /// The algorithm each JWT key command of the README is for.
    key_algorithms: Vec<String>,
}

/// The key paths of the production example, as it names them.
struct Example {
    token_key_file: String,
    jwt_key_file: String,
    algorithm: String,
}

/// The README's commands sorted by what this test does with them; a program in neither
/// [`RUN`] nor [`SKIPPED`] fails here.
#[derive(Default)]
struct Sorted {
    installs: Vec<Shown>,
    openssl: Vec<Shown>,
    patgate: Vec<Shown>,
    skipped: Vec<(Shown, &'static str)>,
}

fn sort(commands: Vec<Shown>) -> Sorted {
    let mut sorted = Sorted::default();
    for command in commands {
        let program = command.program().to_string();
        if let Some((_, why)) = SKIPPED.iter().find(|(p, _)| *p == program) {
            sorted.skipped.push((command, *why));
            continue;
        }
        match program.as_str() {
            "install" => sorted.installs.push(command),
            "openssl" => sorted.openssl.push(command),
            "patgate" => sorted.patgate.push(command),
            _ => panic!(
                "deploy/README.md shows `{}`: run `{program}` in tests/deploy_docs.rs or add it to SKIPPED with the reason",
                command.line
            ),
        }
    }
    sorted
}

/// Runs the README's `install` lines into the scratch root, owner options dropped;
/// returns each installed file's destination by its source.
async fn install_block(root: &Root, installs: &[Shown]) -> BTreeMap<String, String> {
    let mut destinations = BTreeMap::new();
    for command in installs {
        let mut args = Vec::new();
        let mut rest = command.words[1..].iter();
        while let Some(arg) = rest.next() {
            if arg == "-o" || arg == "-g" {
                rest.next();
            } else {
                args.push(arg.clone());
            }
        }
        if !args.iter().any(|a| a == "-d") {
            let (source, destination) = (&args[args.len() - 2], &args[args.len() - 1]);
            destinations.insert(source.clone(), destination.clone());
            let target = root.here(destination);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            if source.starts_with("target/release/") {
                // The release build is the binary under test; linked, not copied.
                std::os::unix::fs::symlink(binary(), &target).unwrap();
                continue;
            }
            assert!(
                source == "/dev/null" || repo().join(source).is_file(),
                "`{}` installs {source}, which the repository does not have",
                command.line
            );
        }
        let args: Vec<String> = args.iter().map(|a| root.arg(a)).collect();
        let (code, _, err) = run(Path::new("install"), &args, repo(), &[]).await;
        assert_eq!(code, 0, "`{}`: {err}", command.line);
    }
    destinations
}

impl Site {
    async fn install() -> Site {
        let readme = read("deploy/README.md");
        let service = unit_section(&read("deploy/patgate.service"), "Service");
        let root = Root::new();
        let sorted = sort(readme_commands(&readme));
        let destinations = install_block(&root, &sorted.installs).await;

        // What the unit names must be what the install block put in place.
        let exec: Vec<&str> = one(&service, "ExecStart").split_whitespace().collect();
        let config_at = exec
            .iter()
            .position(|w| *w == "--config")
            .map(|i| exec[i + 1])
            .expect("ExecStart names --config");
        let installed = |source: &str| destinations.get(source).map(String::as_str);
        assert_eq!(
            installed("deploy/gateway.production.yaml"),
            Some(config_at),
            "the README installs the production example where ExecStart reads it"
        );
        assert_eq!(
            installed("target/release/patgate"),
            Some(exec[0]),
            "the README installs the binary ExecStart runs"
        );
        let env_file = one(&service, "EnvironmentFile").trim_start_matches('-');
        assert_eq!(
            installed("/dev/null"),
            Some(env_file),
            "the README creates the environment file the unit reads"
        );
        assert!(
            installed("deploy/patgate.service")
                .is_some_and(|d| d.starts_with("/etc/systemd/system/")),
            "the README installs the unit"
        );

        // systemd makes the state directory (StateDirectory=, StateDirectoryMode=).
        let state = format!("/var/lib/{}", one(&service, "StateDirectory"));
        let workdir = one(&service, "WorkingDirectory");
        assert_eq!(workdir, state, "the unit works in its state directory");
        assert_eq!(one(&service, "ReadWritePaths"), state);
        std::fs::create_dir_all(root.here(&state)).unwrap();
        let mode = u32::from_str_radix(one(&service, "StateDirectoryMode"), 8).unwrap();
        std::fs::set_permissions(
            root.here(&state),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();

        // The installed example, with its folders mapped into the scratch root.
        let config = root.here(config_at);
        let text = std::fs::read_to_string(&config).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        std::fs::write(&config, root.text(&text)).unwrap();
        let example = Example {
            token_key_file: yaml_text(&yaml, &["secrets", "token_key_file"]).into(),
            jwt_key_file: yaml_text(&yaml, &["upstream", "identity", "jwt", "key_file"]).into(),
            algorithm: yaml_text(&yaml, &["upstream", "identity", "jwt", "algorithm"]).into(),
        };
        for written in [&example.token_key_file, &example.jwt_key_file] {
            assert!(
                written.starts_with(&format!("{state}/")),
                "the production example writes {written}, outside the unit's ReadWritePaths {state}"
            );
        }

        // The certificate and key the example names (the README leaves making them to
        // the operator's CA).
        let tls_dir = root.path.join("tls-fixture");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let (cert, key) = common::smtp::self_signed(&tls_dir);
        for (from, key_path) in [(cert, "cert_file"), (key, "key_file")] {
            let to = root.here(yaml_text(&yaml, &["tls", key_path]));
            assert!(
                to.parent().unwrap().is_dir(),
                "the README makes the folder of tls.{key_path}"
            );
            std::fs::copy(from, to).unwrap();
        }

        let mut site = Site {
            config,
            workdir: root.here(workdir),
            root,
            env: Vec::new(),
            checks: Vec::new(),
            parsed: Vec::new(),
            skipped: sorted.skipped,
            key_algorithms: Vec::new(),
        };
        for (i, command) in sorted.openssl.iter().enumerate() {
            site.key_command(i, command, &example).await;
        }
        assert!(
            site.root.here(&example.jwt_key_file).is_file(),
            "deploy/README.md shows how to make a {} key for the production example",
            example.algorithm
        );
        site.env_file(&readme, env_file).await;
        for command in sorted.patgate {
            site.patgate_command(command).await;
        }
        site
    }

    /// Runs a key command of the README in a folder of its own. A printed secret must
    /// serve as a token key; a written file must be one the production example reads,
    /// usable there, and is put in its place.
    async fn key_command(&mut self, i: usize, command: &Shown, example: &Example) {
        let dir = self.root.path.join(format!("keys/{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (code, out, err) = sh(&command.line, &dir).await;
        assert_eq!(code, 0, "`{}`: {err}", command.line);
        eprintln!("ran: {}", command.line);
        let written: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let file = match written.as_slice() {
            [] => {
                let secret = pair("PATGATE_SECRETS__TOKEN_KEY", out.trim());
                let (code, _, err) = self.check_with(&[secret]).await;
                assert_eq!(code, 0, "`{}` prints a usable key: {err}", command.line);
                return;
            }
            [file] => file,
            more => panic!("`{}` wrote {more:?}", command.line),
        };
        let name = file.file_name().unwrap();
        if Path::new(&example.token_key_file).file_name() == Some(name) {
            let setting = pair("PATGATE_SECRETS__TOKEN_KEY_FILE", file.display());
            let (code, out, err) = self.check_with(&[setting]).await;
            assert_eq!(code, 0, "`{}`: {err}", command.line);
            assert!(!out.contains("token_key_file"), "{out}");
            std::fs::copy(file, self.root.here(&example.token_key_file)).unwrap();
        } else if Path::new(&example.jwt_key_file).file_name() == Some(name) {
            if self.jwt_key(command, file).await == example.algorithm {
                std::fs::copy(file, self.root.here(&example.jwt_key_file)).unwrap();
            }
        } else {
            panic!(
                "`{}` writes {name:?}; the production example reads {} and {}",
                command.line, example.token_key_file, example.jwt_key_file
            );
        }
    }

    /// Writes the environment file the README shows where the unit reads it, its
    /// `<command>` placeholders replaced by what the commands print.
    async fn env_file(&mut self, readme: &str, path: &str) {
        let (blocks, _) = split_markdown(readme);
        let block = blocks
            .iter()
            .find(|b| {
                !b.text.trim().is_empty()
                    && b.text
                        .lines()
                        .all(|l| l.starts_with("PATGATE_") && l.contains('='))
            })
            .expect("deploy/README.md shows the environment file");
        let mut text = String::new();
        for line in block.text.lines() {
            let (name, value) = line.split_once('=').unwrap();
            let value = match value.strip_prefix('<').and_then(|v| v.strip_suffix('>')) {
                Some(command) => {
                    assert_eq!(words(command)[0], "openssl", "{line}");
                    let (code, out, err) = sh(command, &self.root.path).await;
                    assert_eq!(code, 0, "{command}: {err}");
                    out.trim().to_string()
                }
                None => value.to_string(),
            };
            text.push_str(&format!("{name}={value}\n"));
            self.env.push(pair(name, value));
        }
        std::fs::write(self.root.here(path), text).unwrap();
    }

    /// A patgate command of the README: `check-config` is run on the installed example
    /// with the environment file, and must find every file in place; any other is given
    /// to the binary's parser with `--help` (it needs a database with tokens or Deploy).
    async fn patgate_command(&mut self, command: Shown) {
        let check = command.words.iter().any(|w| w == "check-config");
        let args: Vec<String> = command.words[1..]
            .iter()
            .map(|w| match w.as_str() {
                "FILE" => self.config.display().to_string(),
                w if w.starts_with('<') => "x".to_string(),
                w => self.root.arg(w),
            })
            .chain((!check).then(|| "--help".to_string()))
            .collect();
        let program = if command.words[0].starts_with('/') {
            self.root.here(&command.words[0])
        } else {
            PathBuf::from(binary())
        };
        assert!(
            program.exists(),
            "`{}`: the README installs no {}",
            command.line,
            command.words[0]
        );
        let (code, out, err) = run(&program, &args, &self.workdir, &self.env).await;
        assert_eq!(code, 0, "`{}`: {err}", command.line);
        if check {
            assert!(out.contains("is valid"), "`{}`: {out}", command.line);
            assert!(
                !out.contains("does not exist"),
                "`{}`: the README's files are in place: {out}",
                command.line
            );
            self.checks.push(command);
        } else {
            assert!(out.contains("Usage: patgate"), "`{}`: {out}", command.line);
            self.parsed.push(command);
        }
    }

    /// `check-config` on the installed example with the given environment only.
    async fn check_with(&self, env: &[(String, String)]) -> (i32, String, String) {
        let args = [
            "--config".to_string(),
            self.config.display().to_string(),
            "check-config".into(),
        ];
        run(Path::new(binary()), &args, &self.workdir, env).await
    }

    /// A JWT key a README command made: accepted for the algorithm its paragraph names,
    /// refused for the other one. Returns that algorithm.
    async fn jwt_key(&mut self, command: &Shown, file: &Path) -> String {
        let asymmetric = ["RS256", "EdDSA"];
        let named = asymmetric
            .iter()
            .filter_map(|alg| command.note.find(alg).map(|at| (at, *alg)))
            .min()
            .map(|(_, alg)| alg)
            .unwrap_or_else(|| {
                panic!(
                    "`{}`: the README says which algorithm the key is for",
                    command.line
                )
            });
        for alg in asymmetric {
            let (code, out, err) = self
                .check_with(&[
                    pair("PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE", file.display()),
                    pair("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", alg),
                ])
                .await;
            if alg == named {
                assert_eq!(code, 0, "`{}` makes a {alg} key: {err}", command.line);
                assert!(!out.contains("jwt.key_file"), "{out}");
            } else {
                assert_eq!(
                    code, 2,
                    "`{}`'s key is refused for {alg}: {out}",
                    command.line
                );
                assert!(
                    err.contains(&format!(
                        "upstream.identity.jwt.key_file {}",
                        file.display()
                    )) && err.contains(&format!("it must hold an {alg} key")),
                    "{err}"
                );
            }
        }
        self.key_algorithms.push(named.to_string());
        named.to_string()
    }
}

#[tokio::test]
async fn every_command_deploy_readme_shows_runs_here_or_is_skipped_by_its_rule() {
    let site = Site::install().await;
    for (command, why) in &site.skipped {
        eprintln!("skipped ({why}): {}", command.line);
    }
    for command in &site.parsed {
        eprintln!("parsed: {}", command.line);
    }
    for command in &site.checks {
        eprintln!("ran: {}", command.line);
    }
    let mut algorithms = site.key_algorithms.clone();
    algorithms.sort();
    assert_eq!(
        algorithms,
        ["EdDSA", "RS256"],
        "a key command per asymmetric algorithm"
    );
    assert!(
        site.checks.len() >= 2,
        "check-config as shown inline and through the admin wrapper: {:?}",
        site.checks
    );
    assert!(
        site.parsed.iter().any(|c| c.line.contains("token create")),
        "{:?}",
        site.parsed
    );

    // The command in the production example's own header.
    let example = read("deploy/gateway.production.yaml");
    let shown: Vec<Shown> = example
        .lines()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .trim()
                .strip_prefix("patgate ")
                .map(|rest| Shown::new(&format!("patgate {rest}"), ""))
        })
        .collect();
    assert!(
        !shown.is_empty(),
        "the production example says how to check it"
    );
    for command in shown {
        let args: Vec<String> = command.words[1..]
            .iter()
            .map(|w| site.root.arg(w))
            .collect();
        let (code, out, err) = run(Path::new(binary()), &args, &site.workdir, &site.env).await;
        assert_eq!(code, 0, "`{}`: {err}", command.line);
        assert!(out.contains("is valid"), "{out}");
    }

    // The unit's ExecStart, as systemd would run it, asked for its help.
    let unit = unit_section(&read("deploy/patgate.service"), "Service");
    let exec: Vec<String> = one(&unit, "ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut args: Vec<String> = exec[1..].iter().map(|w| site.root.arg(w)).collect();
    args.push("--help".into());
    let (code, out, err) = run(&site.root.here(&exec[0]), &args, &site.workdir, &site.env).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Usage: patgate {}", exec[1])),
        "{out}"
    );

    // check-config reads the TLS files, as the README says.
    let example: serde_yaml_ng::Value = serde_yaml_ng::from_str(&example).unwrap();
    let cert = site.root.here(yaml_text(&example, &["tls", "cert_file"]));
    std::fs::write(&cert, "not a certificate").unwrap();
    let (code, _, err) = site.check_with(&site.env).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("tls.cert_file {}", cert.display())),
        "{err}"
    );
}

#[tokio::test]
async fn the_production_example_reaches_postgresql_over_tls_and_verify_full_checks_the_certificate()
{
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let ssl: String = {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SHOW ssl")
            .fetch_one(&mut connection)
            .await
            .unwrap()
    };
    if ssl != "on" {
        eprintln!("skipping: the PostgreSQL server at {PG_ENV} does not offer TLS (ssl = {ssl})");
        return;
    }
    let site = Site::install().await;
    let deploy = Upstream::start().await;
    // A trust store holding only a CA the server's certificate does not come from.
    let stranger = site.root.path.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    let (stranger_ca, _) = common::smtp::self_signed(&stranger);
    let empty = site.root.path.join("no-certificates");
    std::fs::create_dir_all(&empty).unwrap();
    let untrusted = [
        pair("SSL_CERT_FILE", stranger_ca.display()),
        pair("SSL_CERT_DIR", empty.display()),
    ];
    let connect = |mode: &str, extra: &[(String, String)]| {
        let mut env = site.env.clone();
        env.push(pair(
            "PATGATE_DATABASE__URL",
            format!("{}?sslmode={mode}", db.url),
        ));
        env.push(pair("PATGATE_UPSTREAM__URL", deploy.url()));
        env.extend(extra.iter().cloned());
        let args = [
            "--config".to_string(),
            site.config.display().to_string(),
            "check-config".into(),
            "--connect".into(),
        ];
        let workdir = site.workdir.clone();
        async move { run(Path::new(binary()), &args, &workdir, &env).await }
    };

    for extra in [&[][..], &untrusted[..]] {
        let (code, out, err) = connect("require", extra).await;
        assert_eq!(
            code, 0,
            "require encrypts without checking the certificate: {err}"
        );
        assert!(out.contains("?sslmode=require: reached"), "{out}");
    }
    let (code, _, err) = connect("verify-full", &untrusted).await;
    assert_ne!(code, 0, "verify-full refuses a certificate nobody trusted");
    assert!(err.contains("certificate"), "{err}");
}

// ---------------------------------------------------------------- the container image

/// The runtime stage of deploy/Containerfile, as far as running the image needs it.
struct Image {
    env: Vec<(String, String)>,
    workdir: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    /// COPY from the build context: source in the repository, destination in the image.
    copies: Vec<(String, String)>,
}

impl Image {
    fn read() -> Image {
        let text = read("deploy/Containerfile").replace("\\\n", " ");
        let stage: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let from = stage.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
        let mut image = Image {
            env: Vec::new(),
            workdir: "/".into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            copies: Vec::new(),
        };
        let array = |json: &str| -> Vec<String> {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON array: {json}: {e}"))
        };
        for line in &stage[from + 1..] {
            let (instruction, rest) = line.split_once(' ').unwrap();
            match instruction {
                "ENV" => {
                    for setting in rest.split_whitespace() {
                        let (name, value) = setting.split_once('=').expect("ENV NAME=value");
                        assert!(!value.contains('"'), "quoted ENV values: teach this test");
                        image.env.push(pair(name, value));
                    }
                }
                "WORKDIR" => image.workdir = rest.trim().to_string(),
                "ENTRYPOINT" => image.entrypoint = array(rest),
                "CMD" => image.cmd = array(rest),
                "COPY" if !rest.starts_with("--from") => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    assert_eq!(parts.len(), 2, "COPY SOURCE DESTINATION: {line}");
                    image
                        .copies
                        .push((parts[0].to_string(), parts[1].to_string()));
                }
                _ => {}
            }
        }
        image
    }
}

/// The image's file system in a scratch root: its configuration file where CMD looks,
/// the working directory; and the command and environment it starts with.
struct Container {
    /// Holds the scratch root for as long as the container runs.
    _root: Root,
    config: PathBuf,
    workdir: PathBuf,
    command: Vec<String>,
    env: Vec<(String, String)>,
}

impl Container {
    fn new() -> Container {
        let image = Image::read();
        let root = Root::new();
        assert_eq!(
            image.entrypoint,
            ["patgate"],
            "the image's entry point is the gateway"
        );
        let config_at = image
            .cmd
            .iter()
            .position(|w| w == "--config")
            .map(|i| image.cmd[i + 1].clone())
            .expect("CMD names --config");
        let (source, _) = image
            .copies
            .iter()
            .find(|(_, destination)| *destination == config_at)
            .unwrap_or_else(|| panic!("deploy/Containerfile copies nothing to {config_at}"));
        let ignore = read("deploy/Containerfile.dockerignore");
        for (source, _) in &image.copies {
            assert!(
                ignore.lines().any(|l| l
                    .strip_prefix('!')
                    .is_some_and(|kept| source == kept || source.starts_with(&format!("{kept}/")))),
                "deploy/Containerfile.dockerignore keeps {source} out of the build context"
            );
        }
        let config = root.here(&config_at);
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(&config, root.text(&read(source))).unwrap();
        let workdir = root.here(&image.workdir);
        std::fs::create_dir_all(&workdir).unwrap();
        let command = image.cmd.iter().map(|w| root.arg(w)).collect();
        let env = image
            .env
            .iter()
            .map(|(k, v)| pair(k, root.arg(v)))
            .collect();
        Container {
            _root: root,
            config,
            workdir,
            command,
            env,
        }
    }

    /// Runs the image's command (`args` empty) or `patgate ARGS` as `docker exec` would,
    /// with extra `docker run -e` variables.
    async fn run(&self, args: &[&str], extra: &[(String, String)]) -> (i32, String, String) {
        let args: Vec<String> = if args.is_empty() {
            self.command.clone()
        } else {
            args.iter().map(|a| a.to_string()).collect()
        };
        let mut env = self.env.clone();
        env.extend(extra.iter().cloned());
        // A start that is not refused would serve on: give up on it early.
        let limit = Duration::from_secs(15);
        run_for(limit, Path::new(binary()), &args, &self.workdir, &env).await
    }
}

#[tokio::test]
async fn the_image_refuses_to_start_until_deploy_and_an_identity_are_named() {
    let container = Container::new();
    let deploy = Upstream::start().await;
    let url = pair("PATGATE_UPSTREAM__URL", deploy.url());
    let secret = pair(
        "PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET",
        random_suffix().repeat(4),
    );

    let (code, _, refusal) = container.run(&[], &[]).await;
    assert_eq!(code, 2, "{refusal}");
    assert_eq!(refusal.trim().lines().count(), 1, "one message: {refusal}");
    assert!(refusal.contains("upstream.url"), "{refusal}");
    assert!(
        std::fs::read_dir(&container.workdir)
            .unwrap()
            .next()
            .is_none(),
        "a refused start writes nothing to the volume"
    );

    // Each way out the message names: Deploy's address and an identity.
    let fixes: [Vec<(String, String)>; 3] = [
        vec![url.clone(), secret.clone()],
        vec![url.clone(), pair("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt")],
        vec![
            url.clone(),
            pair("PATGATE_UPSTREAM__IDENTITY__MODE", "basic"),
            pair("PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME", "patgate-svc"),
            pair(
                "PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD",
                "s3cret-password",
            ),
        ],
    ];
    for fix in &fixes {
        for (name, _) in fix {
            let short = name.replace("PATGATE_UPSTREAM__IDENTITY__BASIC__", "__");
            assert!(
                refusal.contains(name) || refusal.contains(&short),
                "{name} in: {refusal}"
            );
        }
        let (code, out, err) = container.run(&["check-config"], fix).await;
        assert_eq!(code, 0, "{fix:?}: {err}");
        assert!(out.contains("is valid"), "{out}");
    }

    // Half a fix is refused for the other half.
    let (code, _, err) = container.run(&[], std::slice::from_ref(&url)).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("upstream.url") && err.contains("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET"),
        "{err}"
    );
    let (code, _, err) = container.run(&[], std::slice::from_ref(&secret)).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("PATGATE_UPSTREAM__URL") && !err.contains("shared_secret"),
        "{err}"
    );

    // With them the image serves, and a token request reaches Deploy as its user. Only
    // the port differs from the image: 4516 may be taken on this machine.
    let mut env: Vec<(&str, &str)> = container
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend([
        (url.0.as_str(), url.1.as_str()),
        (secret.0.as_str(), secret.1.as_str()),
    ]);
    env.push(("PATGATE_LISTEN", "127.0.0.1:0"));
    let gateway = Process::start_in(&container.workdir, &container.config, &env).await;
    let (code, token, err) = run_in(
        &container.workdir,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "7d",
        ],
        &env,
    )
    .await;
    assert_eq!(code, 0, "docker exec … patgate token create: {err}");
    let answer = get(
        &gateway.url("/deployit/repository/ci"),
        &[("x-deploy-personal-token", token.trim())],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = deploy.last();
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert_eq!(seen.headers["x-patgate-secret"], secret.1.as_str());
    assert!(
        std::fs::read_dir(&container.workdir)
            .unwrap()
            .next()
            .is_some(),
        "the database and key live in the volume"
    );
    gateway.terminate().await;
}
