
            struct EvcxrUserCodeError {}
            impl<T: std::fmt::Display> From<T> for EvcxrUserCodeError {
                fn from(error: T) -> Self {
                    eprintln!("{:#?}", error);
                    println!("{}", evcxr_internal_runtime::USER_ERROR_OCCURRED);
                    EvcxrUserCodeError {}
                }
            }
        
fn run() {}