//! Filesystems of the kinds a `--path` filter must work on, mounted for one test under the
//! temporary directory and unmounted on drop (a panic included).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// A filesystem mounted for a test: files go under `path`.
pub struct TestMount {
    pub path: PathBuf,
    /// What it is, for messages: `tmpfs`, `overlay`, `ext4`.
    pub kind: &'static str,
    /// Everything this made, unmounted and removed in reverse order.
    base: PathBuf,
    mounts: Vec<PathBuf>,
}

impl TestMount {
    fn base(name: &str) -> PathBuf {
        let base = std::env::temp_dir().join(format!("chaos-mount-{name}-{}", std::process::id()));
        fs::create_dir_all(&base).expect("make the mount's directory");
        base
    }

    /// A tmpfs.
    pub fn tmpfs(name: &str) -> Self {
        let base = Self::base(name);
        let path = base.join("tmpfs");
        mount(&["-t", "tmpfs", "tmpfs"], &path).unwrap_or_else(|err| panic!("{err}"));
        TestMount {
            mounts: vec![path.clone()],
            path,
            kind: "tmpfs",
            base,
        }
    }

    /// An overlay whose lower layer (holding `lower_files`, relative paths created before the
    /// mount) and upper layer are two tmpfs, with `xino=off`: the layers are on different
    /// filesystems, so overlayfs reports a file's `st_dev` as its layer's, not the overlay's,
    /// and the hooks see both the overlay's inode and the layer's.
    pub fn overlay(name: &str, lower_files: &[&str]) -> Self {
        let base = Self::base(name);
        let (lower, upper) = (base.join("lower"), base.join("upper"));
        let mut mounts = Vec::new();
        for layer in [&lower, &upper] {
            mount(&["-t", "tmpfs", "tmpfs"], layer).unwrap_or_else(|err| panic!("{err}"));
            mounts.push(layer.clone());
        }
        for file in lower_files {
            let file = lower.join(file);
            fs::create_dir_all(file.parent().expect("a parent")).expect("make a lower directory");
            fs::write(&file, b"from the lower layer").expect("write a lower file");
        }
        for dir in ["data", "work"] {
            fs::create_dir_all(upper.join(dir)).expect("make the upper directories");
        }
        let path = base.join("overlay");
        let options = format!(
            "lowerdir={},upperdir={},workdir={},xino=off",
            lower.display(),
            upper.join("data").display(),
            upper.join("work").display()
        );
        mount(&["-t", "overlay", "overlay", "-o", &options], &path)
            .unwrap_or_else(|err| panic!("{err}"));
        mounts.push(path.clone());
        TestMount {
            path,
            kind: "overlay",
            base,
            mounts,
        }
    }

    /// An ext4 filesystem in a 32 MiB image file, through a loop device.
    pub fn ext4(name: &str) -> Self {
        let base = Self::base(name);
        let image = base.join("ext4.img");
        fs::File::create(&image)
            .and_then(|file| file.set_len(32 << 20))
            .expect("make the image file");
        // Stock kernels have the loop driver as a module; a kernel with it built in has nothing
        // to load.
        let _ = Command::new("modprobe")
            .arg("loop")
            .stderr(std::process::Stdio::null())
            .status();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))
            .unwrap_or_else(|err| panic!("{err}"));
        let path = base.join("ext4");
        let source = image.to_str().expect("utf-8");
        mount(&["-t", "ext4", "-o", "loop", source], &path).unwrap_or_else(|err| panic!("{err}"));
        TestMount {
            mounts: vec![path.clone()],
            path,
            kind: "ext4",
            base,
        }
    }

    /// The filesystem type the kernel reports for `path` (statfs's magic number, named).
    pub fn kind_of(path: &Path) -> &'static str {
        let c_path = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("no NUL");
        // SAFETY: statfs(2) into a struct we own, on a C string that outlives the call.
        let magic = unsafe {
            let mut stat: libc::statfs = std::mem::zeroed();
            assert_eq!(
                libc::statfs(c_path.as_ptr(), &mut stat),
                0,
                "statfs {path:?}"
            );
            stat.f_type
        };
        match magic {
            libc::TMPFS_MAGIC => "tmpfs",
            libc::OVERLAYFS_SUPER_MAGIC => "overlay",
            libc::EXT4_SUPER_MAGIC => "ext4",
            _ => "other",
        }
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        for dir in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("--lazy").arg(dir).status();
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// `mount ARGS DIR`, making DIR first.
fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|err| format!("make {}: {err}", dir.display()))?;
    run(Command::new("mount").args(args).arg(dir))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("{command:?}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
