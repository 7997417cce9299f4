# bash completion for planctonctl(1)
# Installed as /usr/share/bash-completion/completions/planctonctl.

_planctonctl() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion || return
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="status pilots start drain resume stop reload logs bootstrap"
    local options="--json --help --version"

    # Find the command word, if any, skipping global options.
    local i cmd=""
    for ((i = 1; i < cword; i++)); do
        case "${words[i]}" in
            -*) ;;
            *) cmd="${words[i]}"; break ;;
        esac
    done

    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "$options" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    case "$cmd" in
        logs)
            # Arguments go to journalctl: offer its common options and our journal fields.
            local jopts="-f --follow -n --lines -p --priority -S --since -U --until -o --output -x -r --reverse --no-pager --json"
            local fields="PLANCTON_EVENT= PLANCTON_PILOT= PLANCTON_POOL= PLANCTON_REASON= PLANCTON_EXIT_CODE="
            if [[ "$cur" == PLANCTON_EVENT=* ]]; then
                local events="pilot-started pilot-exited pilot-frozen pilot-thawed pilot-stopped pilot-killed state-changed config-loaded config-rejected docker-lost docker-back pool-backoff image owner-yield"
                COMPREPLY=($(compgen -P "PLANCTON_EVENT=" -W "$events" -- "${cur#PLANCTON_EVENT=}"))
            elif [[ "$cur" == -* ]]; then
                COMPREPLY=($(compgen -W "$jopts" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$fields" -- "$cur"))
                [[ ${#COMPREPLY[@]} -eq 1 && "${COMPREPLY[0]}" == *= ]] && compopt -o nospace 2>/dev/null
            fi
            ;;
        bootstrap)
            local bopts="--as --yes --dry-run --config --state-dir --ca-file --pin-sha256 --token-file --interval --timeout --help"
            case "$prev" in
                --as) COMPREPLY=($(compgen -W "local remote" -- "$cur")) ;;
                --config|--ca-file|--token-file) COMPREPLY=($(compgen -f -- "$cur")) ;;
                --state-dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
                --pin-sha256|--interval|--timeout) ;;
                *) [[ "$cur" == -* ]] && COMPREPLY=($(compgen -W "$bopts" -- "$cur"))
                   [[ -z "$cur" ]] && COMPREPLY=($(compgen -W "https:// github:" -- "$cur")) ;;
            esac
            ;;
        status|pilots|start|drain|resume|stop|reload)
            [[ "$cur" == -* ]] && COMPREPLY=($(compgen -W "--json --help" -- "$cur"))
            ;;
    esac
}

complete -F _planctonctl planctonctl
