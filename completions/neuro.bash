# bash completion for neuro                                  -*- shell-script -*-
# Generated from the command tree by `neuro completion bash`: do not edit.
# Install: neuro completion bash > ~/.local/share/bash-completion/completions/neuro
#      or: echo 'source <(neuro completion bash)' >> ~/.bashrc

_neuro_spec() {
    # $1: the command path; sets cmds, opts, vopts (options that take a value), args
    cmds="" opts="" vopts="" args=""
    case "$1" in
    "")
        cmds="attach capacity completion config cp disk exec job kill login logout logs ls mkdir port-forward ps rm run secret server share status storage top wait"
        opts="--color --help --show-traceback --verbose --version -h -v"
        vopts="--color"
        ;;
    "attach")
        opts="--detach-keys --help --port-forward -h"
        vopts="--detach-keys --port-forward"
        args="jobs"
        ;;
    "capacity")
        opts="--help --json -h"
        ;;
    "completion")
        opts="--help -h"
        args="=bash,zsh,fish"
        ;;
    "config")
        cmds="show show-token"
        opts="--help -h"
        ;;
    "config show")
        opts="--help --json -h"
        ;;
    "config show-token")
        opts="--help -h"
        ;;
    "cp")
        opts="--help --recursive -h -r"
        args="- -"
        ;;
    "disk")
        cmds="create ls rm"
        opts="--help -h"
        ;;
    "disk create")
        opts="--help --name -h"
        vopts="--name"
        args="-"
        ;;
    "disk ls")
        opts="--help --json -h"
        ;;
    "disk rm")
        opts="--help -h"
        args="-*"
        ;;
    "exec")
        opts="--detach-keys --help --no-tty --stdin --tty -T -h -i -t"
        vopts="--detach-keys"
        args="jobs -*"
        ;;
    "job")
        cmds="attach browse bump-life-span exec generate-run-command kill logs ls port-forward run send-signal status tags top"
        opts="--help -h"
        ;;
    "job attach")
        opts="--detach-keys --help --port-forward -h"
        vopts="--detach-keys --port-forward"
        args="jobs"
        ;;
    "job browse")
        opts="--help --no-browser -h"
        args="jobs"
        ;;
    "job bump-life-span")
        opts="--help -h"
        args="jobs -"
        ;;
    "job exec")
        opts="--detach-keys --help --no-tty --stdin --tty -T -h -i -t"
        vopts="--detach-keys"
        args="jobs -*"
        ;;
    "job generate-run-command")
        opts="--help -h"
        args="jobs"
        ;;
    "job kill")
        opts="--help --signal -h -s"
        vopts="--signal -s"
        args="jobs*"
        ;;
    "job logs")
        opts="--help --since --timestamps -h"
        vopts="--since"
        args="jobs"
        ;;
    "job ls")
        opts="--all --description --distinct --format --help --json --last --name --owner --quiet --recent-first --recent-last --since --status --tag --until --watch -a -d -h -n -o -q -s -t"
        vopts="--description --format --last --name --owner --since --status --tag --until -d -n -o -s -t"
        ;;
    "job port-forward")
        opts="--help -h"
        args="jobs -*"
        ;;
    "job run")
        opts="--description --detach --detach-keys --entrypoint --env --env-file --extshm --help --http-auth --http-port --life-span --life-span-signal --name --no-extshm --no-http-auth --no-tty --no-wait-start --pass-config --port-forward --preset --privileged --quiet --restart --schedule-timeout --share --tag --tty --volume --wait-for-seat --wait-start --workdir -T -d -e -h -n -q -s -t -v -w"
        vopts="--description --detach-keys --entrypoint --env --env-file --http-port --life-span --life-span-signal --name --port-forward --preset --restart --schedule-timeout --share --tag --volume --workdir -d -e -n -s -v -w"
        args="- -*"
        ;;
    "job send-signal")
        opts="--help -h"
        args="jobs -"
        ;;
    "job status")
        opts="--help --json -h"
        args="jobs"
        ;;
    "job tags")
        opts="--help -h"
        ;;
    "job top")
        opts="--help --json --name --no-stream --owner --since --sort --tag --timeout --until -h -n -o -t"
        vopts="--name --owner --since --sort --tag --timeout --until -n -o -t"
        args="jobs*"
        ;;
    "kill")
        opts="--help --signal -h -s"
        vopts="--signal -s"
        args="jobs*"
        ;;
    "login")
        opts="--help --token -h"
        vopts="--token"
        args="-"
        ;;
    "logout")
        opts="--help -h"
        ;;
    "logs")
        opts="--help --since --timestamps -h"
        vopts="--since"
        args="jobs"
        ;;
    "ls")
        opts="--help --json -h -l"
        args="-"
        ;;
    "mkdir")
        opts="--help --parents -h -p"
        args="-*"
        ;;
    "port-forward")
        opts="--help -h"
        args="jobs -*"
        ;;
    "ps")
        opts="--all --description --distinct --format --help --json --last --name --owner --quiet --recent-first --recent-last --since --status --tag --until --watch -a -d -h -n -o -q -s -t"
        vopts="--description --format --last --name --owner --since --status --tag --until -d -n -o -s -t"
        ;;
    "rm")
        opts="--help --recursive -h -r"
        args="-*"
        ;;
    "run")
        opts="--description --detach --detach-keys --entrypoint --env --env-file --extshm --help --http-auth --http-port --life-span --life-span-signal --name --no-extshm --no-http-auth --no-tty --no-wait-start --pass-config --port-forward --preset --privileged --quiet --restart --schedule-timeout --share --tag --tty --volume --wait-for-seat --wait-start --workdir -T -d -e -h -n -q -s -t -v -w"
        vopts="--description --detach-keys --entrypoint --env --env-file --http-port --life-span --life-span-signal --name --port-forward --preset --restart --schedule-timeout --share --tag --volume --workdir -d -e -n -s -v -w"
        args="- -*"
        ;;
    "secret")
        cmds="add ls rm"
        opts="--help -h"
        ;;
    "secret add")
        opts="--help -h"
        args="- -"
        ;;
    "secret ls")
        opts="--help --json -h"
        ;;
    "secret rm")
        opts="--help -h"
        args="-*"
        ;;
    "server")
        cmds="start status stop"
        opts="--help -h"
        ;;
    "server start")
        opts="--help -h"
        ;;
    "server status")
        opts="--help -h"
        ;;
    "server stop")
        opts="--help -h"
        ;;
    "share")
        opts="--help --list --revoke -h -l"
        args="jobs - =read,write,manage"
        ;;
    "status")
        opts="--help --json -h"
        args="jobs"
        ;;
    "storage")
        cmds="cp ls mkdir rm"
        opts="--help -h"
        ;;
    "storage cp")
        opts="--help --recursive -h -r"
        args="- -"
        ;;
    "storage ls")
        opts="--help --json -h -l"
        args="-"
        ;;
    "storage mkdir")
        opts="--help --parents -h -p"
        args="-*"
        ;;
    "storage rm")
        opts="--help --recursive -h -r"
        args="-*"
        ;;
    "top")
        opts="--help --json --name --no-stream --owner --since --sort --tag --timeout --until -h -n -o -t"
        vopts="--name --owner --since --sort --tag --timeout --until -n -o -t"
        args="jobs*"
        ;;
    "wait")
        opts="--exit-code --for --help --timeout -h"
        vopts="--for --timeout"
        args="jobs*"
        ;;
    esac
}

_neuro_optkind() {
    # $1: the command path, $2: an option; sets kind, what its value completes to
    case "$1|$2" in
    "|--color") kind="=auto,always,never" ;;
    "job ls|-s"|"job ls|--status") kind="=pending,suspended,running,succeeded,failed,cancelled" ;;
    "job run|-s"|"job run|--preset") kind="presets" ;;
    "job run|--env-file") kind="file" ;;
    "job run|--restart") kind="=never,on-failure,always" ;;
    "ps|-s"|"ps|--status") kind="=pending,suspended,running,succeeded,failed,cancelled" ;;
    "run|-s"|"run|--preset") kind="presets" ;;
    "run|--env-file") kind="file" ;;
    "run|--restart") kind="=never,on-failure,always" ;;
    "wait|--for") kind="=finished,succeeded,running" ;;
    *) kind="-" ;;
    esac
}

_neuro_values() {
    # $1: what to offer (jobs, presets, file, =CHOICE,CHOICE or -), $2: the word so far
    local v words=""
    case "$1" in
    jobs|presets)
        while IFS=$'\t' read -r v _; do
            words="$words $v"
        done < <(command neuro __complete "$1" 2>/dev/null)
        COMPREPLY=($(compgen -W "$words" -- "$2"))
        ;;
    file)
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "$2"))
        ;;
    =*)
        v=${1#=}
        COMPREPLY=($(compgen -W "${v//,/ }" -- "$2"))
        ;;
    *)
        COMPREPLY=()
        ;;
    esac
}

_neuro() {
    local cur="${COMP_WORDS[COMP_CWORD]}" cmdpath="" w vopt="" dd="" kind="" i npos=0
    local cmds opts vopts args
    _neuro_spec ""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if [[ -n $vopt ]]; then
            [[ $w == "=" ]] || vopt=""  # --opt=value arrives as: --opt = value
        elif [[ -n $dd ]]; then
            npos=$((npos + 1))
        elif [[ $w == "--" ]]; then
            dd=1
        elif [[ $w == -?* ]]; then
            if [[ " $vopts " == *" $w "* ]]; then vopt=$w; fi
        elif [[ $npos == 0 && " $cmds " == *" $w "* ]]; then
            cmdpath="${cmdpath:+$cmdpath }$w"
            _neuro_spec "$cmdpath"
        else
            npos=$((npos + 1))
        fi
    done
    if [[ -n $vopt ]]; then
        [[ $cur == "=" ]] && cur=""
        _neuro_optkind "$cmdpath" "$vopt"
        _neuro_values "$kind" "$cur"
    elif [[ -z $dd && $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $cmds ]]; then
        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
    else
        local -a kinds=($args)
        local n=${#kinds[@]}
        if ((npos < n)); then
            kind=${kinds[npos]}
        elif ((n > 0)) && [[ ${kinds[n - 1]} == *"*" ]]; then
            kind=${kinds[n - 1]}
        fi
        _neuro_values "${kind%"*"}" "$cur"
    fi
}

complete -F _neuro neuro
