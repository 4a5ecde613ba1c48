from typing import Any, Dict, List, Optional, Tuple

__version__: str

def main(argv: List[str]) -> int: ...
def run(
    argv: List[str], config: Optional[Tuple[str, str]] = None
) -> Tuple[int, str, str, Optional[str], Optional[str]]: ...
def run_document(
    argv: List[str], config: Optional[Tuple[str, str]] = None
) -> Tuple[int, Optional[Dict[str, Any]], str, Optional[str], Optional[str]]: ...
