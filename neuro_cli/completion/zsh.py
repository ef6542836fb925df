"""The zsh completion script, generated from the command tree.

It works both from ``fpath`` (the file ``_neuro``, autoloaded by compinit) and sourced
(``source <(neuro completion zsh)`` after compinit)."""

from __future__ import annotations

from .spec import Spec

HEAD = """\
#compdef neuro
# zsh completion for neuro. Generated from the command tree by `neuro completion zsh`: do not edit.
# Install: mkdir -p ~/.zfunc && neuro completion zsh > ~/.zfunc/_neuro
#          and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)
#      or: echo 'source <(neuro completion zsh)' >> ~/.zshrc   (after compinit)
"""

BODY = r"""
_neuro_values() {
    # $1: what to offer (jobs, presets, file, =CHOICE,CHOICE or -)
    local -a vals
    case $1 in
    (jobs|presets)
        vals=(${(f)"$(command neuro __complete $1 2>/dev/null)"})
        vals=("${(@)vals/$'\t'/:}")
        _describe -t $1 ${1%s} vals
        ;;
    (file)
        _files
        ;;
    ('='*)
        vals=(${(s:,:)${1#=}})
        compadd -a vals
        ;;
    esac
}

_neuro() {
    local cur=$words[CURRENT] cmdpath='' w vopt='' dd='' REPLY
    local -i i npos=0
    local -a cmds names opts vopts args
    _neuro_spec ''
    for ((i = 2; i < CURRENT; i++)); do
        w=$words[i]
        if [[ -n $vopt ]]; then
            vopt=''
        elif [[ -n $dd ]]; then
            npos+=1
        elif [[ $w == -- ]]; then
            dd=1
        elif [[ $w == -?* ]]; then
            (( ${vopts[(Ie)$w]} )) && vopt=$w
        elif (( npos == 0 && ${names[(Ie)$w]} )); then
            cmdpath=${cmdpath:+$cmdpath }$w
            _neuro_spec "$cmdpath"
        else
            npos+=1
        fi
    done
    if [[ -n $vopt ]]; then
        _neuro_optkind "$cmdpath" $vopt
        _neuro_values $REPLY
    elif [[ -z $dd && $cur == --*=* ]] && (( ${vopts[(Ie)${cur%%=*}]} )); then
        _neuro_optkind "$cmdpath" ${cur%%=*}
        compset -P '*='
        _neuro_values $REPLY
    elif [[ -z $dd && $cur == -* ]]; then
        _describe -t options option opts
    elif (( $#cmds )); then
        _describe -t commands command cmds
    else
        REPLY=-
        if (( npos < $#args )); then
            REPLY=$args[npos+1]
        elif (( $#args )) && [[ $args[-1] == *'*' ]]; then
            REPLY=$args[-1]
        fi
        _neuro_values ${REPLY%'*'}
    fi
}

if [[ $funcstack[1] == _neuro ]]; then
    _neuro "$@"  # autoloaded from fpath: this file is the body of _neuro
else
    compdef _neuro neuro
fi
"""


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _items(pairs: list[tuple[str, str]]) -> str:
    return "(" + "\n            ".join(_q(f"{n}:{h}") for n, h in pairs) + ")"


def render(specs: list[Spec]) -> str:
    spec_cases = []
    kind_cases = []
    for s in specs:
        lines = [f"    ({_q(s.key)})"]
        if s.commands:
            lines.append(f"        cmds={_items(list(s.commands))}")
        lines.append(f"        opts={_items([(n, o.help) for o in s.options for n in o.names])}")
        vopts = [n for o in s.value_options for n in o.names]
        if vopts:
            lines.append(f"        vopts=({' '.join(vopts)})")
        if s.args:
            lines.append(f"        args=({' '.join(_q(a) for a in s.args)})")
        spec_cases.append("\n".join(lines) + "\n        ;;")
        for o in s.value_options:
            if o.kind != "-":
                pats = "|".join(_q(f"{s.key}|{n}") for n in o.names)
                kind_cases.append(f"    ({pats}) REPLY={_q(o.kind or '')} ;;")
    return (
        HEAD
        + "\n_neuro_spec() {\n"
        + "    # $1: the command path; sets cmds (and their names), opts, vopts (options that\n"
        + "    # take a value), args\n"
        + "    cmds=() opts=() vopts=() args=()\n"
        + "    case $1 in\n"
        + "\n".join(spec_cases)
        + "\n    esac\n"
        + "    names=(${cmds%%:*})\n}\n"
        + "\n_neuro_optkind() {\n"
        + "    # $1: the command path, $2: an option; sets REPLY, what its value completes to\n"
        + '    case "$1|$2" in\n'
        + "\n".join(kind_cases)
        + "\n    (*) REPLY=- ;;\n    esac\n}\n"
        + BODY
    )
