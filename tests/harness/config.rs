//! A gdprd config that tests edit as TOML, by path, never as text. Every edit says what it expects to find:
//! [`Config::set`] changes a key that must be there, [`Config::insert`] adds one that must not be, [`Config::remove`]
//! takes one that must be, [`Config::merge`] adds sections and keys without changing any. When the demo config
//! changes under a test, the edit panics naming the path, instead of silently doing nothing.
//!
//! A path is keys joined by dots; `name[x]` picks the table of the array `name` whose `name` key is `x`:
//! `intake.rescan_seconds`, `accounts[demo].stores`, `stores.demo.tables[contact_attempt].personal`.

use std::path::Path;
use toml::{Table, Value};

/// A gdprd config, parsed.
#[derive(Clone, Debug)]
pub struct Config {
    table: Table,
}

impl Config {
    /// Parses `text` (a whole config, or a snippet of one).
    pub fn parse(text: &str) -> Config {
        let table = text
            .parse::<Table>()
            .unwrap_or_else(|e| panic!("the config does not parse: {e}\n{text}"));
        Config { table }
    }

    /// Reads and parses the config file at `path`.
    pub fn read(path: &Path) -> Config {
        Config::parse(&std::fs::read_to_string(path).expect("read the config"))
    }

    /// Writes the config to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.text()).expect("write the config");
    }

    /// The config as TOML text.
    pub fn text(&self) -> String {
        toml::to_string(&self.table).expect("a config serialises")
    }

    /// The value at `path`, which must be there.
    pub fn get(&self, path: &str) -> &Value {
        let (parent, key) = split(path);
        let mut table = &self.table;
        for step in steps(parent) {
            table = step.find(table, path);
        }
        table
            .get(key)
            .unwrap_or_else(|| panic!("{path}: no key {key:?} in the config"))
    }

    /// Changes the value at `path`, which must be there.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) -> &mut Config {
        let (table, key) = self.parent(path);
        let slot = table
            .get_mut(key)
            .unwrap_or_else(|| panic!("{path}: no key {key:?} to change in the config"));
        *slot = value.into();
        self
    }

    /// Adds `value` at `path`: the table that holds it must be there, the key must not.
    pub fn insert(&mut self, path: &str, value: impl Into<Value>) -> &mut Config {
        let (table, key) = self.parent(path);
        assert!(
            !table.contains_key(key),
            "{path}: {key:?} is already in the config"
        );
        table.insert(key.to_owned(), value.into());
        self
    }

    /// Removes the value at `path`, which must be there, and returns it.
    pub fn remove(&mut self, path: &str) -> Value {
        let (table, key) = self.parent(path);
        table
            .remove(key)
            .unwrap_or_else(|| panic!("{path}: no key {key:?} to remove from the config"))
    }

    /// Gives the key at `path` (which must be there) the name `to` (which must not be).
    pub fn rename(&mut self, path: &str, to: &str) -> &mut Config {
        let value = self.remove(path);
        let (parent, _) = split(path);
        let to = if parent.is_empty() {
            to.to_owned()
        } else {
            format!("{parent}.{to}")
        };
        self.insert(&to, value)
    }

    /// Appends `value` to the array at `path`, which must be there.
    pub fn push(&mut self, path: &str, value: impl Into<Value>) -> &mut Config {
        let (table, key) = self.parent(path);
        match table.get_mut(key) {
            Some(Value::Array(items)) => items.push(value.into()),
            other => panic!("{path}: not an array in the config but {other:?}"),
        }
        self
    }

    /// Adds what the TOML `snippet` holds: its tables are merged into the config's (made when missing), its
    /// arrays of tables appended, and any other key must be new.
    pub fn merge(&mut self, snippet: &str) -> &mut Config {
        let add = Config::parse(snippet).table;
        merge_into(&mut self.table, add, "");
        self
    }

    /// [`Config::merge`] the TOML `snippet` into the table at `path`, which must be there.
    pub fn extend(&mut self, path: &str, snippet: &str) -> &mut Config {
        let add = Config::parse(snippet).table;
        let mut table = &mut self.table;
        for step in steps(path) {
            table = step.find_mut(table, path);
        }
        merge_into(table, add, path);
        self
    }

    /// The table holding the last key of `path`, and that key.
    fn parent<'p>(&mut self, path: &'p str) -> (&mut Table, &'p str) {
        let (parent, key) = split(path);
        let mut table = &mut self.table;
        for step in steps(parent) {
            table = step.find_mut(table, path);
        }
        (table, key)
    }
}

/// `path` without its last key, and that key (which must be a plain key).
fn split(path: &str) -> (&str, &str) {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    assert!(
        !key.contains('['),
        "{path}: a path ends in a key, not an element"
    );
    (parent, key)
}

/// One step of a path: a key, and the `name` of the array element it picks, if any.
struct Step<'p> {
    key: &'p str,
    name: Option<&'p str>,
}

fn steps(path: &str) -> Vec<Step<'_>> {
    if path.is_empty() {
        return Vec::new();
    }
    path.split('.')
        .map(|s| match s.split_once('[') {
            Some((key, rest)) => Step {
                key,
                name: Some(
                    rest.strip_suffix(']')
                        .unwrap_or_else(|| panic!("{path}: unclosed [ in {s:?}")),
                ),
            },
            None => Step { key: s, name: None },
        })
        .collect()
}

impl Step<'_> {
    fn find<'t>(&self, table: &'t Table, path: &str) -> &'t Table {
        let value = table
            .get(self.key)
            .unwrap_or_else(|| panic!("{path}: no {:?} in the config", self.key));
        let value = match self.name {
            None => value,
            Some(name) => value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .find(|t| t.get("name") == Some(&Value::from(name)))
                })
                .unwrap_or_else(|| panic!("{path}: no {}[{name}] in the config", self.key)),
        };
        value
            .as_table()
            .unwrap_or_else(|| panic!("{path}: {:?} is not a table", self.key))
    }

    fn find_mut<'t>(&self, table: &'t mut Table, path: &str) -> &'t mut Table {
        let value = table
            .get_mut(self.key)
            .unwrap_or_else(|| panic!("{path}: no {:?} in the config", self.key));
        let value = match self.name {
            None => value,
            Some(name) => value
                .as_array_mut()
                .and_then(|items| {
                    items
                        .iter_mut()
                        .find(|t| t.get("name") == Some(&Value::from(name)))
                })
                .unwrap_or_else(|| panic!("{path}: no {}[{name}] in the config", self.key)),
        };
        value
            .as_table_mut()
            .unwrap_or_else(|| panic!("{path}: {:?} is not a table", self.key))
    }
}

/// Adds `add` to `table` (at `path`): tables merge, arrays of tables append, other keys must be new.
fn merge_into(table: &mut Table, add: Table, path: &str) {
    for (key, value) in add {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (table.get_mut(&key), value) {
            (None, value) => {
                table.insert(key, value);
            }
            (Some(Value::Table(mine)), Value::Table(theirs)) => merge_into(mine, theirs, &here),
            (Some(Value::Array(mine)), Value::Array(theirs))
                if mine.iter().chain(&theirs).all(Value::is_table) =>
            {
                mine.extend(theirs);
            }
            (Some(_), _) => panic!("{here} is already in the config: merge adds, `set` changes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    fn demo() -> Config {
        Config::parse(gdprd::demo::DEMO_CONFIG)
    }

    #[test]
    fn edits_by_path_survive_the_round_trip_through_text() {
        let mut c = demo();
        c.set("intake.rescan_seconds", 1)
            .push("accounts[demo].stores", "crm")
            .insert("stores.demo.tables[contact_attempt].soft_delete", "gone")
            .extend("sftp_server", "max_sessions_per_account = 2")
            .merge("[limits]\nbatch_size = 20\n\n[[accounts]]\nname = \"acme\"\nroot = \"a\"\nstores = []");
        c.rename("accounts[demo].retention_days", "keep_days");
        let again = Config::parse(&c.text());
        assert_eq!(again.get("intake.rescan_seconds").as_integer(), Some(1));
        assert_eq!(
            again.get("accounts[demo].stores").as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(
            again
                .get("stores.demo.tables[contact_attempt].soft_delete")
                .as_str(),
            Some("gone")
        );
        assert_eq!(again.get("limits.batch_size").as_integer(), Some(20));
        assert_eq!(again.get("accounts[acme].root").as_str(), Some("a"));
        assert_eq!(again.get("accounts[demo].keep_days").as_integer(), Some(3));
        assert_eq!(
            again
                .get("sftp_server.max_sessions_per_account")
                .as_integer(),
            Some(2)
        );
    }

    #[test]
    #[should_panic(expected = "no key \"rescan_secs\" to change")]
    fn changing_a_key_that_is_not_there_fails() {
        demo().set("intake.rescan_secs", 1);
    }

    #[test]
    #[should_panic(expected = "no tables[nope] in the config")]
    fn a_path_through_a_missing_element_fails() {
        demo().set("stores.demo.tables[nope].personal", vec!["x"]);
    }

    #[test]
    #[should_panic(expected = "intake.rescan_seconds is already in the config")]
    fn merging_never_changes_a_key() {
        demo().merge("[intake]\nrescan_seconds = 1");
    }

    #[test]
    #[should_panic(expected = "no \"metrics\" in the config")]
    fn extending_a_missing_section_fails() {
        demo().extend("metrics", "listen = \"127.0.0.1:0\"");
    }
}
