//! `keygate serve`'s flags, one per setting of the catalogue
//! ([`crate::config::catalogue::SETTINGS`]), each with its `KEYGATE_*` variable.

use crate::config::catalogue::{Kind, Setting, OLD_VARIABLES, SETTINGS};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// The settings given as flags or variables: each with its values and where it came
/// from (for errors).
#[derive(Clone, Debug, Default)]
pub struct SettingArgs(pub Vec<(&'static Setting, Vec<String>, String)>);

fn arg(s: &'static Setting, defaults: &toml::Table) -> Arg {
    let help = match defaults.get(s.name) {
        Some(toml::Value::Array(a)) if a.is_empty() => s.help.to_owned(),
        Some(toml::Value::String(v)) => format!("{} [default: {v}]", s.help),
        Some(v) => format!("{} [default: {v}]", s.help),
        None => s.help.to_owned(),
    };
    let mut a = Arg::new(s.name)
        .long(s.flag())
        .env(s.variable())
        .help(help)
        .value_name(match s.kind {
            Kind::Secs => "SECONDS",
            Kind::Int => "N",
            Kind::Text => "VALUE",
            Kind::List => "VALUE,…",
        })
        .hide_env_values(s.secret);
    for alias in s.aliases {
        a = a.alias(*alias);
    }
    if s.kind == Kind::List {
        a = a.action(ArgAction::Append);
    }
    a
}

impl SettingArgs {
    /// The settings given as `KEYGATE_*` variables alone (no flags).
    pub fn from_environment() -> Self {
        let cmd = Self::augment_args(Command::new("keygate").no_binary_name(true));
        match cmd.try_get_matches_from(Vec::<String>::new()) {
            Ok(m) => Self::from_arg_matches(&m).unwrap_or_default(),
            Err(_) => SettingArgs::default(),
        }
    }
}

impl Args for SettingArgs {
    fn augment_args(cmd: Command) -> Command {
        let defaults = toml::Table::try_from(crate::config::Settings::default()).unwrap_or_default();
        cmd.args(SETTINGS.iter().map(|s| arg(s, &defaults)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for s in SETTINGS {
            if let Some(values) = m.get_many::<String>(s.name) {
                let from = match m.value_source(s.name) {
                    Some(ValueSource::EnvVariable) => s.variable(),
                    _ => format!("--{}", s.flag()),
                };
                given.push((s, values.cloned().collect(), from));
            }
        }
        // Variables of earlier releases, for settings not given under their name.
        for (old, name) in OLD_VARIABLES {
            let Ok(value) = std::env::var(old) else { continue };
            if given.iter().any(|(s, _, _)| s.name == *name) {
                continue;
            }
            if let Some(s) = SETTINGS.iter().find(|s| s.name == *name) {
                eprintln!("warning: {old} is now {}", s.variable());
                given.push((s, vec![value], (*old).to_owned()));
            }
        }
        Ok(SettingArgs(given))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}
