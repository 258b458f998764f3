# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gpurun_global_optspecs
    string join \n q/quiet v/verbose cache-dir= ref= platform= pull= rocm nv gpus= no-gfx-override device= run pwd= f/fakeroot B/bind= c/contain no-home H/home= C/containall writable-tmpfs env= no-env= env-file= e/cleanenv pid-ns= join= join-count= no-join root-mode= p/pid u/userns s/shell= nvccli w/writable o/overlay= n/net i/ipc W/workdir= hostname= mount= dry-run h/help V/version
end

function __fish_gpurun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_gpurun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_gpurun_using_subcommand
    set -l cmd (__fish_gpurun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c gpurun -n "__fish_gpurun_needs_command" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_needs_command" -l gpus -d 'GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l device -d 'CDI device to add (vendor.com/class=name); repeatable' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l pwd -d 'Working directory inside the container' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -s B -l bind -d 'Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -s H -l home -d 'Home directory: bind SRC at DST (default: at SRC) and make it $HOME, also with --contain (Apptainer\'s --home)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l env -d 'Set NAME=VALUE inside the container; repeatable and comma-separated (`--env A=1,B=2`; a piece without `=` continues the previous value: `--env LIST=a,b`)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l no-env -d 'Do not pass these host variables into the container (`NAME`, or `PREFIX*`); repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l env-file -d 'Read NAME=VALUE lines from FILE; repeatable' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -l pid-ns -d 'PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in place, as it would run outside a container), or `auto` (the default): `host` when gpurun is started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`' -r -f -a "auto\t'`host` for an MPI rank, `private` otherwise'
private\t'A new PID namespace with gpurun\'s init as PID 1'
host\t'The host\'s PID namespace; gpurun execs the command in place'"
complete -c gpurun -n "__fish_gpurun_needs_command" -l join -d 'Share one container (user and mount namespaces) with the other runs on this node that give the same KEY: the first creates it, the others enter it, so MPI\'s single-copy transfers work between them. Ranks of `mpirun` and Slurm tasks in the host PID namespace join by themselves (keyed on the launcher\'s job, step and node); implies `--pid-ns host`' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l join-count -d 'How many runs join on this node, this one included (default: the launcher\'s count of ranks on this node, where it says; else the first run serves joins until none came for 30 s)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l root-mode -d 'How the container root is made: `overlay` (overlayfs over the image, the default where the kernel allows it in a user namespace: Linux 5.11), `bind` (a tmpfs of read-only binds of the image\'s directories: older kernels, or a cache on a filesystem overlayfs refuses as a lower layer), or `auto` (the default: `bind` only where overlay cannot work)' -r -f -a "auto\t'`overlay` where the kernel allows it (as root; in a user namespace from Linux 5.11, or on an older kernel that says so when asked once per run), else `bind`'
overlay\t'overlayfs with the image as its read-only lower layer'
bind\t'A tmpfs of read-only binds of the image\'s directories'"
complete -c gpurun -n "__fish_gpurun_needs_command" -s s -l shell -d 'The shell of `gpurun shell` (default: $APPTAINER_SHELL, $SINGULARITY_SHELL, else /bin/sh)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -s o -l overlay -r
complete -c gpurun -n "__fish_gpurun_needs_command" -s W -l workdir -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l hostname -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l mount -r
complete -c gpurun -n "__fish_gpurun_needs_command" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_needs_command" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_needs_command" -l rocm -d 'Bind the host\'s AMD GPUs (/dev/kfd, render nodes) and ROCm userspace'
complete -c gpurun -n "__fish_gpurun_needs_command" -l nv -d 'Bind the host\'s NVIDIA GPUs and driver userspace'
complete -c gpurun -n "__fish_gpurun_needs_command" -l no-gfx-override -d 'With --rocm, never set HSA_OVERRIDE_GFX_VERSION for a GPU whose gfx target the image has no code for (by default it runs as the nearest target of its family the image has)'
complete -c gpurun -n "__fish_gpurun_needs_command" -l run -d 'Pass the arguments after IMAGE to the image\'s ENTRYPOINT in place of its CMD'
complete -c gpurun -n "__fish_gpurun_needs_command" -s f -l fakeroot -d 'Map yourself to root inside the container (with subordinate ids when /etc/subuid allows)'
complete -c gpurun -n "__fish_gpurun_needs_command" -s c -l contain -d 'Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp)'
complete -c gpurun -n "__fish_gpurun_needs_command" -l no-home -d 'Do not bind $HOME'
complete -c gpurun -n "__fish_gpurun_needs_command" -s C -l containall -d 'Apptainer\'s --containall: --contain, --cleanenv and a private PID namespace'
complete -c gpurun -n "__fish_gpurun_needs_command" -l writable-tmpfs -d 'Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit'
complete -c gpurun -n "__fish_gpurun_needs_command" -s e -l cleanenv -d 'Pass nothing from the host environment but TERM and the proxy variables'
complete -c gpurun -n "__fish_gpurun_needs_command" -l no-join -d 'Give this run a container of its own even where ranks would join by themselves'
complete -c gpurun -n "__fish_gpurun_needs_command" -s p -l pid -d 'Apptainer\'s --pid: the same as --pid-ns private'
complete -c gpurun -n "__fish_gpurun_needs_command" -s u -l userns -d 'Apptainer\'s --userns: accepted; gpurun always runs in a user namespace unless started by root'
complete -c gpurun -n "__fish_gpurun_needs_command" -l nvccli
complete -c gpurun -n "__fish_gpurun_needs_command" -s w -l writable
complete -c gpurun -n "__fish_gpurun_needs_command" -s n -l net
complete -c gpurun -n "__fish_gpurun_needs_command" -s i -l ipc
complete -c gpurun -n "__fish_gpurun_needs_command" -l dry-run -d 'Print the launch plan as JSON instead of running it'
complete -c gpurun -n "__fish_gpurun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_needs_command" -s V -l version -d 'Print version'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "exec" -d 'Apptainer\'s `exec`: run COMMAND in IMAGE (the same as `gpurun [OPTIONS] IMAGE COMMAND`)'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "run" -d 'Apptainer\'s `run`: run the image\'s ENTRYPOINT, with ARGS in place of its CMD (`--run`)'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "shell" -d 'Apptainer\'s `shell`: an interactive shell in IMAGE (--shell, $APPTAINER_SHELL, or /bin/sh); arguments after IMAGE go to the shell'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "inspect" -d 'Show an image\'s configuration and layers without unpacking it'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "unpack" -d 'Unpack an image into the cache (if needed) and print its rootfs directory'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "pull" -d 'Pull a docker:// image into the cache and print its id'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "login" -d 'Store credentials for a registry where podman and skopeo read them'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "logout" -d 'Remove the stored credentials for a registry'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "images" -d 'List cached images with their size and source'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "rm" -d 'Remove cached images by id (or id prefix) or by source archive'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "prune" -d 'Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "gpus" -d 'List the host\'s GPUs: index, vendor, model, PCI address, kind, nodes, gfx target, access'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "doctor" -d 'Check what GPU runs need (user namespaces, drivers, device access, libraries) and say how to fix it'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l gpus -d 'GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l device -d 'CDI device to add (vendor.com/class=name); repeatable' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l pwd -d 'Working directory inside the container' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s B -l bind -d 'Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s H -l home -d 'Home directory: bind SRC at DST (default: at SRC) and make it $HOME, also with --contain (Apptainer\'s --home)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l env -d 'Set NAME=VALUE inside the container; repeatable and comma-separated (`--env A=1,B=2`; a piece without `=` continues the previous value: `--env LIST=a,b`)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l no-env -d 'Do not pass these host variables into the container (`NAME`, or `PREFIX*`); repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l env-file -d 'Read NAME=VALUE lines from FILE; repeatable' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l pid-ns -d 'PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in place, as it would run outside a container), or `auto` (the default): `host` when gpurun is started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`' -r -f -a "auto\t'`host` for an MPI rank, `private` otherwise'
private\t'A new PID namespace with gpurun\'s init as PID 1'
host\t'The host\'s PID namespace; gpurun execs the command in place'"
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l join -d 'Share one container (user and mount namespaces) with the other runs on this node that give the same KEY: the first creates it, the others enter it, so MPI\'s single-copy transfers work between them. Ranks of `mpirun` and Slurm tasks in the host PID namespace join by themselves (keyed on the launcher\'s job, step and node); implies `--pid-ns host`' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l join-count -d 'How many runs join on this node, this one included (default: the launcher\'s count of ranks on this node, where it says; else the first run serves joins until none came for 30 s)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l root-mode -d 'How the container root is made: `overlay` (overlayfs over the image, the default where the kernel allows it in a user namespace: Linux 5.11), `bind` (a tmpfs of read-only binds of the image\'s directories: older kernels, or a cache on a filesystem overlayfs refuses as a lower layer), or `auto` (the default: `bind` only where overlay cannot work)' -r -f -a "auto\t'`overlay` where the kernel allows it (as root; in a user namespace from Linux 5.11, or on an older kernel that says so when asked once per run), else `bind`'
overlay\t'overlayfs with the image as its read-only lower layer'
bind\t'A tmpfs of read-only binds of the image\'s directories'"
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s s -l shell -d 'The shell of `gpurun shell` (default: $APPTAINER_SHELL, $SINGULARITY_SHELL, else /bin/sh)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s o -l overlay -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s W -l workdir -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l hostname -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l mount -r
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l rocm -d 'Bind the host\'s AMD GPUs (/dev/kfd, render nodes) and ROCm userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l nv -d 'Bind the host\'s NVIDIA GPUs and driver userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l no-gfx-override -d 'With --rocm, never set HSA_OVERRIDE_GFX_VERSION for a GPU whose gfx target the image has no code for (by default it runs as the nearest target of its family the image has)'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l run -d 'Pass the arguments after IMAGE to the image\'s ENTRYPOINT in place of its CMD'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s f -l fakeroot -d 'Map yourself to root inside the container (with subordinate ids when /etc/subuid allows)'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s c -l contain -d 'Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp)'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l no-home -d 'Do not bind $HOME'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s C -l containall -d 'Apptainer\'s --containall: --contain, --cleanenv and a private PID namespace'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l writable-tmpfs -d 'Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s e -l cleanenv -d 'Pass nothing from the host environment but TERM and the proxy variables'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l no-join -d 'Give this run a container of its own even where ranks would join by themselves'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s p -l pid -d 'Apptainer\'s --pid: the same as --pid-ns private'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s u -l userns -d 'Apptainer\'s --userns: accepted; gpurun always runs in a user namespace unless started by root'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l nvccli
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s w -l writable
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s n -l net
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s i -l ipc
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -l dry-run -d 'Print the launch plan as JSON instead of running it'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l gpus -d 'GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l device -d 'CDI device to add (vendor.com/class=name); repeatable' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l pwd -d 'Working directory inside the container' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s B -l bind -d 'Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s H -l home -d 'Home directory: bind SRC at DST (default: at SRC) and make it $HOME, also with --contain (Apptainer\'s --home)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l env -d 'Set NAME=VALUE inside the container; repeatable and comma-separated (`--env A=1,B=2`; a piece without `=` continues the previous value: `--env LIST=a,b`)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l no-env -d 'Do not pass these host variables into the container (`NAME`, or `PREFIX*`); repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l env-file -d 'Read NAME=VALUE lines from FILE; repeatable' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l pid-ns -d 'PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in place, as it would run outside a container), or `auto` (the default): `host` when gpurun is started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`' -r -f -a "auto\t'`host` for an MPI rank, `private` otherwise'
private\t'A new PID namespace with gpurun\'s init as PID 1'
host\t'The host\'s PID namespace; gpurun execs the command in place'"
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l join -d 'Share one container (user and mount namespaces) with the other runs on this node that give the same KEY: the first creates it, the others enter it, so MPI\'s single-copy transfers work between them. Ranks of `mpirun` and Slurm tasks in the host PID namespace join by themselves (keyed on the launcher\'s job, step and node); implies `--pid-ns host`' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l join-count -d 'How many runs join on this node, this one included (default: the launcher\'s count of ranks on this node, where it says; else the first run serves joins until none came for 30 s)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l root-mode -d 'How the container root is made: `overlay` (overlayfs over the image, the default where the kernel allows it in a user namespace: Linux 5.11), `bind` (a tmpfs of read-only binds of the image\'s directories: older kernels, or a cache on a filesystem overlayfs refuses as a lower layer), or `auto` (the default: `bind` only where overlay cannot work)' -r -f -a "auto\t'`overlay` where the kernel allows it (as root; in a user namespace from Linux 5.11, or on an older kernel that says so when asked once per run), else `bind`'
overlay\t'overlayfs with the image as its read-only lower layer'
bind\t'A tmpfs of read-only binds of the image\'s directories'"
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s s -l shell -d 'The shell of `gpurun shell` (default: $APPTAINER_SHELL, $SINGULARITY_SHELL, else /bin/sh)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s o -l overlay -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s W -l workdir -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l hostname -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l mount -r
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l rocm -d 'Bind the host\'s AMD GPUs (/dev/kfd, render nodes) and ROCm userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l nv -d 'Bind the host\'s NVIDIA GPUs and driver userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l no-gfx-override -d 'With --rocm, never set HSA_OVERRIDE_GFX_VERSION for a GPU whose gfx target the image has no code for (by default it runs as the nearest target of its family the image has)'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l run -d 'Pass the arguments after IMAGE to the image\'s ENTRYPOINT in place of its CMD'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s f -l fakeroot -d 'Map yourself to root inside the container (with subordinate ids when /etc/subuid allows)'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s c -l contain -d 'Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp)'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l no-home -d 'Do not bind $HOME'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s C -l containall -d 'Apptainer\'s --containall: --contain, --cleanenv and a private PID namespace'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l writable-tmpfs -d 'Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s e -l cleanenv -d 'Pass nothing from the host environment but TERM and the proxy variables'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l no-join -d 'Give this run a container of its own even where ranks would join by themselves'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s p -l pid -d 'Apptainer\'s --pid: the same as --pid-ns private'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s u -l userns -d 'Apptainer\'s --userns: accepted; gpurun always runs in a user namespace unless started by root'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l nvccli
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s w -l writable
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s n -l net
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s i -l ipc
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -l dry-run -d 'Print the launch plan as JSON instead of running it'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l gpus -d 'GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l device -d 'CDI device to add (vendor.com/class=name); repeatable' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l pwd -d 'Working directory inside the container' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s B -l bind -d 'Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s H -l home -d 'Home directory: bind SRC at DST (default: at SRC) and make it $HOME, also with --contain (Apptainer\'s --home)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l env -d 'Set NAME=VALUE inside the container; repeatable and comma-separated (`--env A=1,B=2`; a piece without `=` continues the previous value: `--env LIST=a,b`)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l no-env -d 'Do not pass these host variables into the container (`NAME`, or `PREFIX*`); repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l env-file -d 'Read NAME=VALUE lines from FILE; repeatable' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l pid-ns -d 'PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in place, as it would run outside a container), or `auto` (the default): `host` when gpurun is started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`' -r -f -a "auto\t'`host` for an MPI rank, `private` otherwise'
private\t'A new PID namespace with gpurun\'s init as PID 1'
host\t'The host\'s PID namespace; gpurun execs the command in place'"
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l join -d 'Share one container (user and mount namespaces) with the other runs on this node that give the same KEY: the first creates it, the others enter it, so MPI\'s single-copy transfers work between them. Ranks of `mpirun` and Slurm tasks in the host PID namespace join by themselves (keyed on the launcher\'s job, step and node); implies `--pid-ns host`' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l join-count -d 'How many runs join on this node, this one included (default: the launcher\'s count of ranks on this node, where it says; else the first run serves joins until none came for 30 s)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l root-mode -d 'How the container root is made: `overlay` (overlayfs over the image, the default where the kernel allows it in a user namespace: Linux 5.11), `bind` (a tmpfs of read-only binds of the image\'s directories: older kernels, or a cache on a filesystem overlayfs refuses as a lower layer), or `auto` (the default: `bind` only where overlay cannot work)' -r -f -a "auto\t'`overlay` where the kernel allows it (as root; in a user namespace from Linux 5.11, or on an older kernel that says so when asked once per run), else `bind`'
overlay\t'overlayfs with the image as its read-only lower layer'
bind\t'A tmpfs of read-only binds of the image\'s directories'"
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s s -l shell -d 'The shell of `gpurun shell` (default: $APPTAINER_SHELL, $SINGULARITY_SHELL, else /bin/sh)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s o -l overlay -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s W -l workdir -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l hostname -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l mount -r
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l rocm -d 'Bind the host\'s AMD GPUs (/dev/kfd, render nodes) and ROCm userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l nv -d 'Bind the host\'s NVIDIA GPUs and driver userspace'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l no-gfx-override -d 'With --rocm, never set HSA_OVERRIDE_GFX_VERSION for a GPU whose gfx target the image has no code for (by default it runs as the nearest target of its family the image has)'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l run -d 'Pass the arguments after IMAGE to the image\'s ENTRYPOINT in place of its CMD'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s f -l fakeroot -d 'Map yourself to root inside the container (with subordinate ids when /etc/subuid allows)'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s c -l contain -d 'Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp)'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l no-home -d 'Do not bind $HOME'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s C -l containall -d 'Apptainer\'s --containall: --contain, --cleanenv and a private PID namespace'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l writable-tmpfs -d 'Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s e -l cleanenv -d 'Pass nothing from the host environment but TERM and the proxy variables'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l no-join -d 'Give this run a container of its own even where ranks would join by themselves'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s p -l pid -d 'Apptainer\'s --pid: the same as --pid-ns private'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s u -l userns -d 'Apptainer\'s --userns: accepted; gpurun always runs in a user namespace unless started by root'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l nvccli
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s w -l writable
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s n -l net
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s i -l ipc
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -l dry-run -d 'Print the launch plan as JSON instead of running it'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand shell" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l json -d 'Print JSON instead of text'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -l pull -d 'When a docker:// image is fetched: `missing` (the default: a tag pulled before starts without any network), `newer` (when the tag names a new digest), `always`, `never`' -r -f -a "missing\t'Pull only what is not cached'
newer\t'Ask the registry for the tag\'s digest; pull when it changed'
always\t'Fetch the manifest every time (layers only when not cached)'
never\t'Never contact the registry; fail when the image is not cached'"
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -s o -l output -d 'Write the image to FILE as an OCI archive (which every gpurun command, skopeo and podman accept) instead of the cache: pull once onto a shared filesystem, run it on every node' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand pull" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -s u -l username -d 'User name (asked for when missing and standard input is a terminal)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -l password-stdin -d 'Read the password from standard input (otherwise it is asked for, without echo)'
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand login" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand logout" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand logout" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand logout" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand logout" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -l json -d 'Print JSON instead of a table'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -l all -d 'Remove every cached image that no running container uses'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -l json -d 'Print JSON instead of a table'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l cache-dir -d 'Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files\' `cache.dir`, else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l rocm -d 'Check only what --rocm needs'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l nv -d 'Check only what --nv needs'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "exec" -d 'Apptainer\'s `exec`: run COMMAND in IMAGE (the same as `gpurun [OPTIONS] IMAGE COMMAND`)'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "run" -d 'Apptainer\'s `run`: run the image\'s ENTRYPOINT, with ARGS in place of its CMD (`--run`)'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "shell" -d 'Apptainer\'s `shell`: an interactive shell in IMAGE (--shell, $APPTAINER_SHELL, or /bin/sh); arguments after IMAGE go to the shell'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "inspect" -d 'Show an image\'s configuration and layers without unpacking it'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "unpack" -d 'Unpack an image into the cache (if needed) and print its rootfs directory'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "pull" -d 'Pull a docker:// image into the cache and print its id'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "login" -d 'Store credentials for a registry where podman and skopeo read them'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "logout" -d 'Remove the stored credentials for a registry'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "images" -d 'List cached images with their size and source'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "rm" -d 'Remove cached images by id (or id prefix) or by source archive'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "prune" -d 'Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "gpus" -d 'List the host\'s GPUs: index, vendor, model, PCI address, kind, nodes, gfx target, access'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "doctor" -d 'Check what GPU runs need (user namespaces, drivers, device access, libraries) and say how to fix it'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from exec run shell inspect unpack pull login logout images rm prune gpus doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
