# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gpurun_global_optspecs
    string join \n q/quiet v/verbose cache-dir= ref= platform= rocm nv gpus= device= run pwd= fakeroot B/bind= c/contain no-home writable-tmpfs e/env= env-file= C/cleanenv pid-ns= dry-run h/help V/version
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

complete -c gpurun -n "__fish_gpurun_needs_command" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l gpus -d 'GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l device -d 'CDI device to add (vendor.com/class=name); repeatable' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l pwd -d 'Working directory inside the container' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -s B -l bind -d 'Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -s e -l env -d 'Set NAME=VALUE inside the container; repeatable' -r
complete -c gpurun -n "__fish_gpurun_needs_command" -l env-file -d 'Read NAME=VALUE lines from FILE; repeatable' -r -F
complete -c gpurun -n "__fish_gpurun_needs_command" -l pid-ns -d 'PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in place, as it would run outside a container), or `auto` (the default): `host` when gpurun is started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`' -r -f -a "auto\t'`host` for an MPI rank, `private` otherwise'
private\t'A new PID namespace with gpurun\'s init as PID 1'
host\t'The host\'s PID namespace; gpurun execs the command in place'"
complete -c gpurun -n "__fish_gpurun_needs_command" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_needs_command" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_needs_command" -l rocm -d 'Bind the host\'s AMD GPUs (/dev/kfd, render nodes) and ROCm userspace'
complete -c gpurun -n "__fish_gpurun_needs_command" -l nv -d 'Bind the host\'s NVIDIA GPUs and driver userspace'
complete -c gpurun -n "__fish_gpurun_needs_command" -l run -d 'Pass the arguments after IMAGE to the image\'s ENTRYPOINT in place of its CMD'
complete -c gpurun -n "__fish_gpurun_needs_command" -l fakeroot -d 'Map yourself to root inside the container (with subordinate ids when /etc/subuid allows)'
complete -c gpurun -n "__fish_gpurun_needs_command" -s c -l contain -d 'Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp)'
complete -c gpurun -n "__fish_gpurun_needs_command" -l no-home -d 'Do not bind $HOME'
complete -c gpurun -n "__fish_gpurun_needs_command" -l writable-tmpfs -d 'Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit'
complete -c gpurun -n "__fish_gpurun_needs_command" -s C -l cleanenv -d 'Pass nothing from the host environment but TERM and the proxy variables'
complete -c gpurun -n "__fish_gpurun_needs_command" -l dry-run -d 'Print the launch plan as JSON instead of running it'
complete -c gpurun -n "__fish_gpurun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gpurun -n "__fish_gpurun_needs_command" -s V -l version -d 'Print version'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "inspect" -d 'Show an image\'s configuration and layers without unpacking it'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "unpack" -d 'Unpack an image into the cache (if needed) and print its rootfs directory'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "images" -d 'List cached images with their size and source'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "rm" -d 'Remove cached images by id (or id prefix) or by source archive'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "prune" -d 'Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "gpus" -d 'List the host\'s GPUs: index, vendor, model, PCI address, kind, nodes, gfx target, access'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "doctor" -d 'Check what GPU runs need (user namespaces, drivers, device access, libraries) and say how to fix it'
complete -c gpurun -n "__fish_gpurun_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -l json -d 'Print JSON instead of text'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l ref -d 'Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name)' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l platform -d 'Platform to select from a multi-platform image, as os/arch[/variant]' -r
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand unpack" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -l json -d 'Print JSON instead of a table'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand images" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand rm" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -l all -d 'Remove every cached image that no running container uses'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand prune" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -l json -d 'Print JSON instead of a table'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand gpus" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l cache-dir -d 'Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun)' -r -F
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l rocm -d 'Check only what --rocm needs'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -l nv -d 'Check only what --nv needs'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s q -l quiet -d 'Print nothing but errors (no progress bar, no warnings)'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s v -l verbose -d 'More detail on stderr; repeat for debug output'
complete -c gpurun -n "__fish_gpurun_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "inspect" -d 'Show an image\'s configuration and layers without unpacking it'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "unpack" -d 'Unpack an image into the cache (if needed) and print its rootfs directory'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "images" -d 'List cached images with their size and source'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "rm" -d 'Remove cached images by id (or id prefix) or by source archive'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "prune" -d 'Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "gpus" -d 'List the host\'s GPUs: index, vendor, model, PCI address, kind, nodes, gfx target, access'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "doctor" -d 'Check what GPU runs need (user namespaces, drivers, device access, libraries) and say how to fix it'
complete -c gpurun -n "__fish_gpurun_using_subcommand help; and not __fish_seen_subcommand_from inspect unpack images rm prune gpus doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
