"""The fish completion script, generated from the command tree."""

from __future__ import annotations

from .spec import Spec

HEAD = """\
# fish completion for neuro. Generated from the command tree by `neuro completion fish`: do not edit.
# Install: neuro completion fish > ~/.config/fish/completions/neuro.fish
"""

BODY = r"""
function __neuro_values --description 'neuro: values of a kind (jobs, presets, file, =A,B or -)'
    switch $argv[1]
        case jobs presets
            command neuro __complete $argv[1] 2>/dev/null
        case file
            __fish_complete_path $argv[2]
        case '=*'
            string split , -- (string sub -s 2 -- $argv[1])
    end
end

function __neuro_complete --description 'neuro: completions for the command line'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l cmdpath
    set -l vopt
    set -l dd
    set -l npos 0
    __neuro_spec ''
    for w in $tokens[2..-1]
        if test -n "$vopt"
            set vopt
        else if test -n "$dd"
            set npos (math $npos + 1)
        else if test "$w" = --
            set dd 1
        else if string match -qr -- '^-.' $w
            contains -- $w $__neuro_vopts; and set vopt $w
        else if test $npos -eq 0; and contains -- $w (string replace -r '\t.*' '' -- $__neuro_cmds)
            set -a cmdpath $w
            __neuro_spec "$cmdpath"
        else
            set npos (math $npos + 1)
        end
    end
    if test -n "$vopt"
        __neuro_values (__neuro_optkind "$cmdpath" $vopt) $cur
    else if test -z "$dd"; and string match -q -- '--*=*' $cur
        set -l opt (string split -m 1 = -- $cur)[1]
        if contains -- $opt $__neuro_vopts
            for v in (__neuro_values (__neuro_optkind "$cmdpath" $opt) (string split -m 1 = -- $cur)[2])
                echo "$opt=$v"
            end
        end
    else if test -z "$dd"; and string match -q -- '-*' $cur
        string join \n -- $__neuro_opts
    else if set -q __neuro_cmds[1]
        string join \n -- $__neuro_cmds
    else
        set -l kind -
        if test $npos -lt (count $__neuro_args)
            set kind $__neuro_args[(math $npos + 1)]
        else if set -q __neuro_args[1]; and string match -q -- '*\*' $__neuro_args[-1]
            set kind $__neuro_args[-1]
        end
        __neuro_values (string trim -r -c '*' -- $kind) $cur
    end
end

complete -c neuro -e
complete -c neuro -f -a '(__neuro_complete)'
"""


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _items(pairs: list[tuple[str, str]]) -> str:
    return " \\\n            ".join(f"{_q(n)}\\t{_q(h)}" if h else _q(n) for n, h in pairs)


def render(specs: list[Spec]) -> str:
    spec_cases = []
    kind_cases = []
    for s in specs:
        lines = [f"        case {_q(s.key)}"]
        if s.commands:
            lines.append(f"            set -g __neuro_cmds {_items(list(s.commands))}")
        opts = [(n, o.help) for o in s.options for n in o.names]
        lines.append(f"            set -g __neuro_opts {_items(opts)}")
        vopts = [n for o in s.value_options for n in o.names]
        if vopts:
            lines.append(f"            set -g __neuro_vopts {' '.join(_q(n) for n in vopts)}")
        if s.args:
            lines.append(f"            set -g __neuro_args {' '.join(_q(a) for a in s.args)}")
        spec_cases.append("\n".join(lines))
        for o in s.value_options:
            if o.kind != "-":
                pats = " ".join(_q(f"{s.key}|{n}") for n in o.names)
                kind_cases.append(f"        case {pats}\n            echo {_q(o.kind or '')}")
    return (
        HEAD
        + "\nfunction __neuro_spec --description 'neuro: subcommands, options and arguments of a command path'\n"
        + "    set -g __neuro_cmds\n    set -g __neuro_opts\n    set -g __neuro_vopts\n"
        + "    set -g __neuro_args\n"
        + '    switch "$argv[1]"\n'
        + "\n".join(spec_cases)
        + "\n    end\nend\n"
        + "\nfunction __neuro_optkind --description 'neuro: what the value of an option completes to'\n"
        + '    switch "$argv[1]|$argv[2]"\n'
        + "\n".join(kind_cases)
        + "\n        case '*'\n            echo -\n    end\nend\n"
        + BODY
    )
