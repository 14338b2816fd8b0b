//! Hot reload: the config file, the rule files and the web config (with the certificates it
//! names) are watched (notify); a change is loaded and checked in full, and only a good version
//! replaces the running one. A broken file is logged with its file and line and shows in
//! `poolwatch_reload_successful`, while the last good version keeps running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::config::web::WebConfig;
use crate::config::{AlertingArgs, Config, TargetArgs};
use crate::rules::files::{self, RuleSet};
use crate::scheduler::Agent;

/// Events closer together than this are one change (editors write files in several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// Watches `paths` (files through their directory, so replaced files are seen too).
pub fn watch(
    paths: &[PathBuf],
) -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    let mut watched = Vec::new();
    for path in paths {
        let dir = if path.is_dir() {
            path.clone()
        } else {
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        if !watched.contains(&dir) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
            watched.push(dir);
        }
    }
    Ok((watcher, rx))
}

/// Waits until changes settle.
pub async fn settled(events: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if events.recv().await.is_none() {
        return false;
    }
    loop {
        match tokio::time::timeout(SETTLE, events.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// What the agent was started from, to load it again.
pub struct Reloader {
    args: TargetArgs,
    alerting: AlertingArgs,
    rule_paths: Vec<PathBuf>,
    config_text: Option<String>,
    rules_text: String,
    web: Option<WebReload>,
}

/// The web config file, what was read of it and its files last, and the listeners' watch.
struct WebReload {
    path: PathBuf,
    files: Vec<PathBuf>,
    seen: Vec<u8>,
    updates: watch::Sender<Arc<WebConfig>>,
}

/// Everything a web config was read from: a certificate renewed in place is a change too.
fn fingerprint(files: &[PathBuf]) -> Vec<u8> {
    let mut all = Vec::new();
    for file in files {
        all.extend_from_slice(file.as_os_str().as_encoded_bytes());
        all.push(0);
        all.extend(std::fs::read(file).unwrap_or_default());
        all.push(0);
    }
    all
}

fn read_all(paths: &[PathBuf]) -> String {
    let mut problems = Vec::new();
    files::expand(paths, &mut problems)
        .iter()
        .map(|f| {
            format!(
                "{}\n{}",
                f.display(),
                std::fs::read_to_string(f).unwrap_or_default()
            )
        })
        .collect()
}

impl Reloader {
    pub fn new(args: TargetArgs, alerting: AlertingArgs, rule_paths: Vec<PathBuf>) -> Reloader {
        let config_text = args
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let rules_text = read_all(&rule_paths);
        Reloader {
            args,
            alerting,
            rule_paths,
            config_text,
            rules_text,
            web: None,
        }
    }

    /// Also reloads the web config at `path`, whose current version `updates` holds.
    pub fn with_web_config(
        mut self,
        path: PathBuf,
        updates: watch::Sender<Arc<WebConfig>>,
    ) -> Reloader {
        let files = updates.borrow().files.clone();
        let seen = fingerprint(&files);
        self.web = Some(WebReload {
            path,
            files,
            seen,
            updates,
        });
        self
    }

    /// Everything to watch.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.args
            .config
            .iter()
            .cloned()
            .chain(self.rule_paths.iter().cloned())
            .chain(self.web.iter().flat_map(|w| w.files.iter().cloned()))
            .collect()
    }

    fn reload_web_config(&mut self, agent: &Agent) {
        let Some(web) = &mut self.web else {
            return;
        };
        let seen = fingerprint(&web.files);
        if seen == web.seen {
            return;
        }
        web.seen = seen;
        match WebConfig::load(&web.path) {
            Ok(config) => {
                tracing::info!(
                    tls = config.tls.is_some(),
                    users = config.users.len(),
                    "web config reloaded"
                );
                web.files = config.files.clone();
                web.seen = fingerprint(&web.files);
                web.updates.send_replace(Arc::new(config));
                agent.reload_succeeded("web_config");
            }
            Err(problems) => {
                tracing::error!(
                    "web config not reloaded, the previous one keeps serving:\n{problems}"
                );
                agent.reload_failed("web_config", problems.to_string());
            }
        }
    }

    /// Loads what changed and hands the agent what is good; a new config is returned too, for
    /// what runs beside the agent (the Alertmanager sender).
    pub fn reload(&mut self, agent: &Agent) -> Option<Config> {
        self.reload_web_config(agent);
        let mut reloaded = None;
        if let Some(path) = &self.args.config {
            let text = std::fs::read_to_string(path).ok();
            if text != self.config_text {
                self.config_text = text;
                match self.alerting.load(&self.args) {
                    Ok(config) => {
                        let rules: Vec<PathBuf> = config
                            .rules
                            .iter()
                            .chain(&self.args.rules)
                            .cloned()
                            .collect();
                        if !rules.is_empty() && rules != self.rule_paths {
                            tracing::warn!("changing which rule files are loaded takes a restart");
                        }
                        agent.reload_config(config.clone());
                        reloaded = Some(config);
                    }
                    Err(problems) => {
                        tracing::error!(
                            "config not reloaded, the previous one keeps running:\n{problems}"
                        );
                        agent.reload_failed("config", problems.to_string());
                    }
                }
            }
        }
        if self.rule_paths.is_empty() {
            return reloaded;
        }
        let text = read_all(&self.rule_paths);
        if text == self.rules_text {
            return reloaded;
        }
        self.rules_text = text;
        match RuleSet::load(&self.rule_paths) {
            Ok(rules) => agent.reload_rules(rules),
            Err(problems) => {
                tracing::error!("rules not reloaded, the previous ones keep running:\n{problems}");
                agent.reload_failed("rules", problems.to_string());
            }
        }
        reloaded
    }
}
