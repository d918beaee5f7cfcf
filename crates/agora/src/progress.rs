//! Progress of long commands (`agora import`, `agora export`) on stderr.
//!
//! On a terminal it is a bar that redraws itself (indicatif); anywhere else (a CI log, a pipe,
//! systemd's journal) it is plain lines, one each time another tenth of the work is done, so a
//! log shows that the command moves without being flooded by one line per module. The command's
//! own report (stdout) is not touched either way.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports `done / total` units of work (module versions, files).
pub struct Progress {
    inner: Inner,
}

enum Inner {
    Bar(ProgressBar),
    Lines {
        out: Box<dyn Write + Send>,
        /// What the command does, e.g. `import`.
        verb: &'static str,
        /// What is counted, e.g. `module versions`.
        unit: &'static str,
        total: u64,
        done: u64,
        /// The next tenth (1..=10) to report.
        next_tenth: u64,
    },
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn stderr(verb: &'static str, unit: &'static str, total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(verb);
            Progress {
                inner: Inner::Bar(bar),
            }
        } else {
            Progress::lines(Box::new(std::io::stderr()), verb, unit, total)
        }
    }

    /// Plain lines to `out` (what [`Progress::stderr`] does off a terminal).
    pub fn lines(
        out: Box<dyn Write + Send>,
        verb: &'static str,
        unit: &'static str,
        total: u64,
    ) -> Progress {
        Progress {
            inner: Inner::Lines {
                out,
                verb,
                unit,
                total,
                done: 0,
                next_tenth: 1,
            },
        }
    }

    /// One more unit done; `what` names it (shown by the bar).
    pub fn inc(&mut self, what: &str) {
        match &mut self.inner {
            Inner::Bar(bar) => {
                bar.set_message(what.to_owned());
                bar.inc(1);
            }
            Inner::Lines {
                out,
                verb,
                unit,
                total,
                done,
                next_tenth,
            } => {
                *done += 1;
                // A line for every tenth reached; several at once when the total is small.
                let mut reached = false;
                while *next_tenth <= 10 && *done * 10 >= *next_tenth * *total {
                    *next_tenth += 1;
                    reached = true;
                }
                if reached {
                    // Progress is a courtesy: a closed stderr must not fail the command.
                    let _ = writeln!(
                        out,
                        "{verb}: {done}/{total} {unit} ({}%)",
                        *done * 100 / (*total).max(1)
                    );
                }
            }
        }
    }

    /// Ends the bar (lines need no ending).
    pub fn finish(&mut self) {
        if let Inner::Bar(bar) = &self.inner {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(total: u64) -> Vec<String> {
        let buf = Buf::default();
        let mut p = Progress::lines(Box::new(buf.clone()), "import", "module versions", total);
        for i in 0..total {
            p.inc(&format!("m@v{i}"));
        }
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(String::from).collect()
    }

    #[test]
    fn a_line_per_tenth_and_always_the_last() {
        let lines = run(100);
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "import: 10/100 module versions (10%)");
        assert_eq!(lines[9], "import: 100/100 module versions (100%)");
        assert_eq!(
            run(3),
            vec![
                "import: 1/3 module versions (33%)",
                "import: 2/3 module versions (66%)",
                "import: 3/3 module versions (100%)",
            ]
        );
        assert_eq!(run(1), vec!["import: 1/1 module versions (100%)"]);
        assert!(run(0).is_empty());
        assert_eq!(run(1000).len(), 10);
    }
}
