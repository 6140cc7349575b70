//! A scheduler policy built against a later contract, `keelson:plugin@0.2.0`, which the host
//! must refuse naming the version it found.

wit_bindgen::generate!({
    inline: "
        package keelson:plugin@0.2.0;

        interface lifecycle {
            name: func() -> string;
            configure: func(options: string) -> result<_, string>;
        }

        interface scheduler {
            node-removed: func(index: u32);
        }

        world policy {
            export lifecycle;
            export scheduler;
        }
    ",
    world: "policy",
});

struct V2;

impl exports::keelson::plugin::lifecycle::Guest for V2 {
    fn name() -> String {
        "contract-v2".into()
    }

    fn configure(_options: String) -> Result<(), String> {
        Ok(())
    }
}

impl exports::keelson::plugin::scheduler::Guest for V2 {
    fn node_removed(_index: u32) {}
}

export!(V2);
