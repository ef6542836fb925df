"""The bash completion script (bash 3.2+), generated from the command tree."""

from __future__ import annotations

from .spec import Spec

HEAD = """\
# bash completion for neuro                                  -*- shell-script -*-
# Generated from the command tree by `neuro completion bash`: do not edit.
# Install: neuro completion bash > ~/.local/share/bash-completion/completions/neuro
#      or: echo 'source <(neuro completion bash)' >> ~/.bashrc
"""

# Commands and options complete from the tables above without running anything; job ids,
# job names and presets come from `neuro __complete KIND`, which reads a local cache and
# never waits for the server.
BODY = r"""
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
"""


def _q(s: str) -> str:
    return '"' + s + '"'


def render(specs: list[Spec]) -> str:
    spec_cases = []
    kind_cases = []
    for s in specs:
        opts = " ".join(sorted(n for o in s.options for n in o.names))
        vopts = " ".join(sorted(n for o in s.value_options for n in o.names))
        lines = [f"    {_q(s.key)})"]
        if s.commands:
            lines.append(f"        cmds={_q(' '.join(n for n, _ in s.commands))}")
        lines.append(f"        opts={_q(opts)}")
        if vopts:
            lines.append(f"        vopts={_q(vopts)}")
        if s.args:
            lines.append(f"        args={_q(' '.join(s.args))}")
        spec_cases.append("\n".join(lines) + "\n        ;;")
        for o in s.value_options:
            if o.kind != "-":
                pats = "|".join(_q(f"{s.key}|{n}") for n in o.names)
                kind_cases.append(f"    {pats}) kind={_q(o.kind or '')} ;;")
    return (
        HEAD
        + "\n_neuro_spec() {\n"
        + "    # $1: the command path; sets cmds, opts, vopts (options that take a value), args\n"
        + '    cmds="" opts="" vopts="" args=""\n'
        + '    case "$1" in\n'
        + "\n".join(spec_cases)
        + "\n    esac\n}\n"
        + "\n_neuro_optkind() {\n"
        + "    # $1: the command path, $2: an option; sets kind, what its value completes to\n"
        + '    case "$1|$2" in\n'
        + "\n".join(kind_cases)
        + '\n    *) kind="-" ;;\n    esac\n}\n'
        + BODY
    )
