# Sourced by the fetch scripts (rootfs-tests/gpu/fetch-vendor.sh, rootfs-tests/vm/fetch-kernels.sh):
# apt through a PRIVATE sources list and state directory, so the system's apt configuration is
# never touched. `private_apt_update APT_DIR SOURCES` sets $opts (the options every later apt-get
# or apt-cache call of the script passes) and downloads that list's indexes into APT_DIR.
private_apt_update() {
    apt_dir=$1
    opts="-o Dir::Etc::SourceList=$2 -o Dir::Etc::SourceParts=/dev/null \
          -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache::Archives=$apt_dir/archives \
          -o Dir::Cache::pkgcache=$apt_dir/pkgcache.bin -o Dir::Cache::srcpkgcache=$apt_dir/srcpkgcache.bin \
          -o Debug::NoLocking=1"
    # shellcheck disable=SC2086
    apt-get $opts -q update >"$apt_dir/update.log" 2>&1 || { cat "$apt_dir/update.log" >&2; return 1; }
}
