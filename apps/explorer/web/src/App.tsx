import { type FormEvent, useEffect, useRef, useState } from "react";
import { NavLink, Route, Routes, useLocation, useNavigate } from "react-router";
import { AccountPage } from "./pages/Account.tsx";
import { DatanetPage } from "./pages/Datanet.tsx";
import { EpochPage } from "./pages/Epoch.tsx";
import { InferencePage } from "./pages/Inference.tsx";
import { ModelPage } from "./pages/Model.tsx";
import { OverviewPage } from "./pages/Overview.tsx";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** "Go to": an address opens its account, an inference id its trace, a number its epoch. */
function GoTo() {
  const navigate = useNavigate();
  const [value, setValue] = useState("");
  const [hint, setHint] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const v = value.trim();
    if (ADDRESS.test(v)) void navigate(`/accounts/${v.toLowerCase()}`);
    else if (UUID.test(v)) void navigate(`/inferences/${v.toLowerCase()}`);
    else if (/^\d+$/.test(v)) void navigate(`/epochs/${v}`);
    else if (v) void navigate(`/models/${encodeURIComponent(v)}`);
    else return setHint("Type an address, an inference id, an epoch number or a model id");
    setHint("");
    setValue("");
  };
  return (
    <form className="goto" aria-label="Go to" onSubmit={submit}>
      <label htmlFor="goto" className="sr-only">
        Go to an address, inference, epoch or model
      </label>
      <input
        id="goto"
        value={value}
        onChange={(e) => setValue(e.target.value)}
        placeholder="Address, inference id, epoch, model"
        aria-describedby="goto-hint"
      />
      <button type="submit">Go</button>
      <span id="goto-hint" className="sr-only" aria-live="polite">
        {hint}
      </span>
    </form>
  );
}

export function App() {
  const location = useLocation();
  const main = useRef<HTMLElement>(null);
  // A new page moves focus to its content, as a full page load would (screen readers announce it).
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs on navigation
  useEffect(() => {
    main.current?.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }, [location.pathname]);
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <NavLink to="/" className="brand">
          OpenLedger <span>Explorer</span>
        </NavLink>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Overview
          </NavLink>
          <NavLink to="/epochs/latest">Epochs</NavLink>
          <NavLink to="/accounts/me">Account</NavLink>
        </nav>
        <GoTo />
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Routes>
          <Route path="/" element={<OverviewPage />} />
          <Route path="/datanets/:id" element={<DatanetPage />} />
          <Route path="/inferences/:id" element={<InferencePage />} />
          <Route path="/models/:id" element={<ModelPage />} />
          <Route path="/epochs/:id" element={<EpochPage />} />
          <Route path="/accounts/:address" element={<AccountPage />} />
          <Route path="*" element={<p className="error">No such page.</p>} />
        </Routes>
      </main>
      <footer className="foot">
        Figures come from the services' public APIs; amounts are exact (wei of OPEN, 18 decimals).
      </footer>
    </>
  );
}
